# qss-relay container image.
#
# Build:  docker build -t qss-relay .
# Run:    docker run -d --name qss-relay --restart=always \
#           --env-file /etc/zoom-qss/env.vars \
#           -v qss-relay-spool:/var/lib/qss-relay \
#           qss-relay
#
# The spool MUST be on a volume: without one it lives in the container's writable layer
# and dies with the container, and with it every event waiting for LogScale.

# --- build stage: the same command CI runs (.ci/run) ---
FROM rust:1.95-bookworm AS build
# The commit for `relay --version` (no .git in the build context): --build-arg QSS_RELAY_COMMIT=$(git rev-parse --short=12 HEAD)
ARG QSS_RELAY_COMMIT=unknown
ENV QSS_RELAY_COMMIT=${QSS_RELAY_COMMIT}
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin relay \
 && mkdir -p /out/var/lib/qss-relay/spool \
 && cp target/release/relay /out/relay

# --- runtime stage: glibc, CA certificates, a non-root user, nothing else ---
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/relay /usr/local/bin/relay
COPY --from=build --chown=65532:65532 /out/var/lib/qss-relay /var/lib/qss-relay
ENV RELAY_SPOOL_DIR=/var/lib/qss-relay/spool \
    RELAY_ADMIN_ADDR=127.0.0.1:9464 \
    RELAY_LOG_FORMAT=text
USER 65532:65532
VOLUME ["/var/lib/qss-relay"]
# Webhook endpoint (only used when ZOOM_WEBHOOK_SECRET_TOKEN is set) and admin endpoint.
EXPOSE 8443 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/relay", "health"]
ENTRYPOINT ["/usr/local/bin/relay"]
CMD ["run"]
