"""`abqa ui`: a Streamlit app to ask every arm a question side by side and to browse run reports."""
