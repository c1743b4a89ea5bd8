"""The `payments` command: see main.py."""
