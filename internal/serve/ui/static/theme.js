// Runs before the stylesheet paints so a chosen theme never flashes the other one first.
try {
  const t = localStorage.getItem("ariadne-theme");
  if (t === "light" || t === "dark") document.documentElement.dataset.theme = t;
} catch {
  // Storage can be blocked; the system preference still applies through CSS.
}
