"""The live dashboard's logic, kept apart from ``streamlit_app.py`` so it is testable without a browser.

``settings`` reads the environment, ``queries`` holds every SQL statement and the pure pandas
transforms, ``charts`` builds the Altair views, and ``data`` wraps the queries in Streamlit's caches
and turns database failures into one line a user can act on.
"""
