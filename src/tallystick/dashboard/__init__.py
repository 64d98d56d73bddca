"""The web dashboard: server-rendered pages whose charts are drawn from the HTTP API."""
