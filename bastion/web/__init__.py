"""The web console: server-rendered views of one tenant at /console, behind the API's keys and
roles (bastion.web.app). docs/web.md describes it."""
