// MathJax 3 configuration for pymdownx.arithmatex (generic mode), then the renderer itself:
// the copy shipped with the site by docs/hooks/mathjax.py (works offline), or the CDN when the
// build could not ship it.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};

(function () {
  var here = document.currentScript.src.replace(/[^/]*$/, "");
  var cdn = "https://cdn.jsdelivr.net/npm/mathjax@3.2.2/es5/tex-svg-full.js";
  var script = document.createElement("script");
  script.async = true;
  script.src = here + "vendor/mathjax/tex-svg-full.js";
  script.onerror = function () {
    var fallback = document.createElement("script");
    fallback.async = true;
    fallback.src = cdn;
    document.head.appendChild(fallback);
  };
  document.head.appendChild(script);
})();

document$.subscribe(function () {
  // On the first page load MathJax typesets by itself once it has loaded; this covers later
  // page changes.
  if (window.MathJax && window.MathJax.typesetPromise) {
    window.MathJax.typesetPromise();
  }
});
