"""The doors in: the HTTP API and its middleware, the web page (static/), Slack and Mattermost, the CLI.

May import: every other wing (the top layer); nothing imports it.
"""
