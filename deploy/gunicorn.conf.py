"""gunicorn settings for the AICMO web console, admin and API (README "Deploying").

Used by deploy/aicmo-web.service and by the tests' web servers (tests/web_server.py), so the tests
serve through the same settings as production. Options given on gunicorn's command line override
these (the unit sets --bind; the tests set --bind and --workers).
"""

wsgi_app = "aicmo_site.wsgi:application"

# Behind a reverse proxy on the same host (nginx, Caddy) that terminates TLS.
bind = ["127.0.0.1:8000"]

# gthread, not sync: a sync worker closes the connection after every response, gthread keeps it open
# (keep-alive) for a proxy or an API client that sends many requests. Django is synchronous and
# mostly waits on the database, so a few threads per process help; add processes for CPU
# (about one per core). 2 x 4 = 8 requests served at once.
worker_class = "gthread"
workers = 2
threads = 4

# A worker that answers nothing for 30 s is killed and replaced (the console and the API answer in
# milliseconds; nothing slow runs in a request: actions run in the daemon). SIGTERM (systemctl stop)
# lets requests in flight finish for up to graceful_timeout seconds.
timeout = 30
graceful_timeout = 30
# Seconds an idle keep-alive connection stays open; a proxy's upstream keep-alive timeout should be
# shorter than this so that gunicorn never closes a connection the proxy is about to reuse.
keepalive = 5

# X-Forwarded-Proto (and friends) are believed only from these addresses: the proxy on this host. A
# proxy on another host: its address here, never "*" on a port others can reach (README "Deploying").
forwarded_allow_ips = "127.0.0.1,::1"

# Access and error logs to stdout/stderr: the journal under systemd.
accesslog = "-"
errorlog = "-"

# gunicornc's control socket defaults to $HOME/.gunicorn/gunicorn.ctl, one path for every gunicorn
# of a user: two servers (the tests start several) would take it from each other. Not used here;
# `systemctl reload` (SIGHUP) restarts the workers gracefully.
control_socket_disable = True
