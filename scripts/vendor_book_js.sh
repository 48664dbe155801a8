#!/usr/bin/env bash
# Vendor the JavaScript the book's pages load into book/_vendor/ (served as _static/), so that no page
# requests anything from another host. Run it when ipywidgets or plotly are upgraded, then commit.
#   require.js       npm requirejs
#   html-manager/    npm @jupyter-widgets/html-manager (the version matching the installed ipywidgets)
#   plotly.min.js    the plotly PyPI package's own copy of plotly.js
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
REQUIREJS=2.3.8
HTML_MANAGER=${HTML_MANAGER:-1.0.15}   # ipywidgets 8.1.x asks for ^1.0.1 (ipywidgets._version.__html_manager_version__)
out=book/_vendor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "requirejs@$REQUIREJS" "@jupyter-widgets/html-manager@$HTML_MANAGER" >/dev/null)
mkdir -p "$tmp/rq" "$tmp/hm" "$out/html-manager"
tar xzf "$tmp/requirejs-$REQUIREJS.tgz" -C "$tmp/rq"
tar xzf "$tmp/jupyter-widgets-html-manager-$HTML_MANAGER.tgz" -C "$tmp/hm"
cp "$tmp/rq/package/require.js" "$out/require.js"
# embed-amd.js bundles the base, controls and output widgets; the fonts are its Font Awesome icons
# (Chromium reads woff2, then woff/ttf; the svg and eot fallbacks are for old browsers and are left out)
rm -f "$out"/html-manager/*
cp "$tmp"/hm/package/dist/{embed-amd.js,embed.js.LICENSE.txt} "$tmp"/hm/package/dist/*.{woff2,woff,ttf} "$out/html-manager/"
cp "$("$PY" -c 'import plotly, os; print(os.path.dirname(plotly.__file__))')/package_data/plotly.min.js" "$out/plotly.min.js"
{
  echo "Vendored by scripts/vendor_book_js.sh (MIT / BSD-3-Clause licensed, see each file's header):"
  echo "require.js          requirejs $REQUIREJS (npm)"
  echo "html-manager/       @jupyter-widgets/html-manager $HTML_MANAGER (npm)"
  echo "plotly.min.js       $(head -c 200 "$out/plotly.min.js" | grep -o 'plotly.js v[0-9.]*') (PyPI plotly $("$PY" -c 'import plotly; print(plotly.__version__)'))"
} > "$out/VERSIONS"
cat "$out/VERSIONS"
