// Light and dark themes: CSS custom properties in base.css keyed on <html data-theme>.
// The choice ("auto", "light", "dark") is kept on this device; "auto" follows the system.

const STORAGE_KEY = "vendhub.theme";
export const THEMES = ["auto", "light", "dark"];
const media = window.matchMedia("(prefers-color-scheme: dark)");

export function themeChoice() {
  const stored = localStorage.getItem(STORAGE_KEY);
  return THEMES.includes(stored) ? stored : "auto";
}

function resolved(choice) {
  return choice === "auto" ? (media.matches ? "dark" : "light") : choice;
}

export function applyTheme(choice = themeChoice()) {
  const theme = resolved(choice);
  document.documentElement.dataset.theme = theme;
  const meta = document.querySelector('meta[name="theme-color"]');
  if (meta) meta.setAttribute("content", theme === "dark" ? "#111827" : "#0f766e");
  return theme;
}

export function setTheme(choice) {
  localStorage.setItem(STORAGE_KEY, choice);
  applyTheme(choice);
}

media.addEventListener("change", () => applyTheme());
