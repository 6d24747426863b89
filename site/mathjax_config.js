// MathJax 2.7 as the site ships it (the jupyter-server-mathjax package): TeX input and the
// HTML-CSS output with the STIX-Web fonts that package includes (it has no TeX fonts), so
// no font is looked for elsewhere. Read by MathJax.js, which is loaded after this file.
window.MathJax = {
    "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
    menuSettings: {renderer: "HTML-CSS", CHTMLpreview: false},
    "fast-preview": {disabled: true}
};
