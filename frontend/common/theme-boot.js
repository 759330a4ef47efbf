// Loaded as a classic script in <head> so the chosen theme is set before the first paint
// (the page's CSP allows no inline script). The theme module takes over from here.
(function () {
  var choice = "auto";
  try {
    choice = localStorage.getItem("vendhub.theme") || "auto";
  } catch (e) {}
  var dark = choice === "dark" || (choice !== "light" && window.matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.setAttribute("data-theme", dark ? "dark" : "light");
})();
