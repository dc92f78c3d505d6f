# nodrute: SIP B2BUA call router for 113 and 116117.
#
#   docker build -t nodrute .
#   docker run --rm -p 5060:5060/udp -p 5060:5060/tcp -p 20000-29999:20000-29999/udp \
#       -e NODRUTE__SIP__ADVERTISED_HOST=<address callers and centres reach> \
#       -e NODRUTE__MEDIA__ADDRESS=<that address, for RTP> nodrute
#
# Media is anchored on the router by default (prompts, RTP relayed leg to leg): the RTP port
# range must be reachable at NODRUTE__MEDIA__ADDRESS (published ports or --network host), or
# set NODRUTE__MEDIA__ENABLED=false to relay SDP end to end instead.
#
# The image listens on 0.0.0.0:5060 (UDP and TCP) with configs/nodrute.toml and the SAMPLE
# routing table; mount the operator's own tables over /app/configs/tables to route for real.
# Prometheus metrics on :9464; table versions in SQLite under /app/var (a volume), or set
# NODRUTE__DATABASE__URL to a PostgreSQL URL shared by all nodes.

# --- builder: a venv with the project installed (no build tools in the runtime image) -----
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv

COPY pyproject.toml README.md ./
COPY sip ./sip
COPY router ./router
COPY municipality_map ./municipality_map
COPY ivr ./ivr
RUN /opt/venv/bin/pip install --no-cache-dir .

# --- runtime ----------------------------------------------------------------------------
FROM python:3.11-slim AS runtime

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NODRUTE__SIP__HOST=0.0.0.0 \
    NODRUTE__METRICS__HOST=0.0.0.0 \
    NODRUTE__DATABASE__URL=sqlite+aiosqlite:////app/var/nodrute.db

RUN groupadd --system --gid 10001 nodrute \
    && useradd --system --uid 10001 --gid nodrute --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin nodrute

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY configs ./configs
# Table versions and the audit log live in /app/var (mount a volume there to keep them).
RUN mkdir -p /app/var && chown nodrute:nodrute /app/var

USER 10001:10001

EXPOSE 5060/udp 5060/tcp 5061/tcp 9464/tcp 20000-29999/udp

# Healthy = an out-of-dialog OPTIONS over UDP to 127.0.0.1:5060 gets "SIP/2.0 200", or 503
# while the node drains after SIGTERM (alive and finishing its calls: an orchestrator that
# restarted it then would cut those calls; the carrier's SBC reads the 503 as "use another node").
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(3); s.bind(('127.0.0.1',0)); p=s.getsockname()[1]; s.sendto(('OPTIONS sip:127.0.0.1:5060 SIP/2.0\\r\\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKhealth%d;rport\\r\\nMax-Forwards: 70\\r\\nFrom: <sip:health@127.0.0.1>;tag=health\\r\\nTo: <sip:127.0.0.1:5060>\\r\\nCall-ID: health-%d@127.0.0.1\\r\\nCSeq: 1 OPTIONS\\r\\nContent-Length: 0\\r\\n\\r\\n' % (p,p,p)).encode(), ('127.0.0.1',5060)); sys.exit(0 if s.recv(65535).startswith((b'SIP/2.0 200',b'SIP/2.0 503')) else 1)"]

# SIGTERM drains: new calls get 503 + Retry-After, calls in progress go on until they end or
# [sip] drain_timeout_s (default 3600 s), then the node exits 0; a second SIGTERM stops at once.
# Give it the time: `docker stop -t 3600`, compose `stop_grace_period: 1h`, Kubernetes
# `terminationGracePeriodSeconds: 3600` (Docker's default 10 s SIGKILLs calls in progress).
# SIGHUP (`docker kill -s HUP`) reloads the config file.
STOPSIGNAL SIGTERM

CMD ["nodrute", "serve", "--config", "/app/configs/nodrute.toml"]
