"""The Streamlit app (thin): pages render widgets and call ``yfpo_core``; all logic lives in the core."""
