"""The reporting dashboard, straight from the warehouse: each page's data (models, quality,
analytics), the pages themselves (pages: Jinja + Plotly, live or static), their routes in the
API app (routes) and the static report of `emotionops report build` (bundle)."""
