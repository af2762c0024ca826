"""Tests of the live pages (rep console, dashboard)."""
