"""Deploy artefacts: systemd notify client, unit file, container and Kubernetes manifests."""
