"""The dashboard's logic, kept apart from ``streamlit_app.py`` so it is testable without a browser.

``settings`` reads the environment. For the live prices, ``queries`` holds every SQL statement,
``transforms`` and ``time_axis`` the pure pandas, ``charts`` builds the Altair views, and ``data``
wraps the queries in Streamlit's caches and turns database failures into one line a user can act
on. The pipeline panel is ``pipeline_view`` over ``pipeline`` (its tables, pure), ``lag`` (the
consumer's lag from the checkpoints and the broker) and ``lake`` (the lake's last commit); the
analytics view is ``analytics_view`` over ``marts`` (the dbt marts' DuckDB file) and ``analytics``
(pure). ``formatting`` turns values into the strings the page shows.
"""
