"""The data plane: render nginx.conf, run nginx, talk to the Lua API, and apply a Configuration."""
