"""DSG Lab dashboard: a Streamlit app over dsg_core (run with ``streamlit run dashboard/app.py``)."""
