// WCAG 2.x contrast of every piece of visible text on the page, as the browser paints it.
// Evaluated by tests/web/test_browser.py (page.evaluate); returns one entry per text:
// {where, text, ratio, need}, need being 4.5, or 3 for large text (>= 24px, or >= 18.66px bold).
//
// Colours come from getComputedStyle; the background is composited up the ancestor chain,
// alpha and `opacity` included (an `opacity` fades text and background towards what is behind
// the element). SVG text is measured by its `fill`; generated `::before` text too. Disabled
// controls are exempt (WCAG 1.4.3), and so are visually hidden (1px) elements.
() => {
  const WHITE = [255, 255, 255, 1];
  const parse = (value) => {
    const m = /rgba?\(([^)]*)\)/.exec(value || "");
    if (!m) { return [0, 0, 0, 0]; }
    const p = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  // `top` (any alpha) painted over the opaque colour `under`.
  const over = (top, under) =>
    [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
  // An opacity group: colour `c` at opacity `o` over `behind`.
  const mix = (c, behind, o) => [0, 1, 2].map((i) => c[i] * o + behind[i] * (1 - o)).concat([1]);
  const luminance = (c) => {
    const f = (v) => {
      v /= 255;
      return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const ratio = (a, b) => {
    const x = luminance(a);
    const y = luminance(b);
    return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
  };
  const describe = (el, pseudo) => {
    let where = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "");
    if (typeof el.className === "string" && el.className.trim()) {
      where += "." + el.className.trim().split(/\s+/).join(".");
    }
    return where + (pseudo || "");
  };
  const measure = (el, pseudo, label) => {
    const nodes = [];
    for (let n = el; n; n = n.parentElement) { nodes.unshift(n); }
    const backs = [];
    let back = WHITE;
    nodes.forEach((n) => {
      back = over(parse(getComputedStyle(n).backgroundColor), back);
      backs.push(back);
    });
    const style = getComputedStyle(el, pseudo);
    let text = over(parse(el instanceof SVGElement ? style.fill : style.color), back);
    if (pseudo && Number(style.opacity) < 1) { text = mix(text, back, Number(style.opacity)); }
    for (let i = nodes.length - 1; i >= 0; i--) {
      const o = Number(getComputedStyle(nodes[i]).opacity);
      if (o < 1) {
        const behind = i > 0 ? backs[i - 1] : WHITE;
        text = mix(text, behind, o);
        back = mix(back, behind, o);
      }
    }
    const size = parseFloat(style.fontSize);
    const weight = Number(style.fontWeight) || 400;
    const large = size >= 24 || (size >= 18.66 && weight >= 700);
    return {
      where: describe(el, pseudo),
      text: label.trim().slice(0, 40),
      ratio: Math.round(ratio(text, back) * 100) / 100,
      need: large ? 3 : 4.5,
    };
  };
  const out = [];
  document.querySelectorAll("body *").forEach((el) => {
    if (["SCRIPT", "STYLE", "TEMPLATE", "OPTION"].includes(el.tagName)) { return; }
    if (!el.checkVisibility({ visibilityProperty: true })) { return; }
    const box = el.getBoundingClientRect();
    if (box.width <= 1 || box.height <= 1 || el.closest(":disabled")) { return; }
    const own = Array.from(el.childNodes)
      .filter((n) => n.nodeType === Node.TEXT_NODE)
      .map((n) => n.textContent)
      .join("");
    if (own.trim() || ["SELECT", "TEXTAREA"].includes(el.tagName)) {
      out.push(measure(el, null, own || el.tagName));
    }
    const before = getComputedStyle(el, "::before").content;
    if (before && before !== "none" && before !== "normal" && before.replace(/["'\s]/g, "")) {
      out.push(measure(el, "::before", before));
    }
  });
  return out;
}
