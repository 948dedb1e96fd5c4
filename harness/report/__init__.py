"""Leaderboard reports from MLflow: statistics per suite, rendered as self-contained HTML and Markdown."""
