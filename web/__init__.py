"""The family web app: server-rendered pages over the same services, selectors and access policy as the
JSON API."""
