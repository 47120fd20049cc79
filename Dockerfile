# scimd in a container:
# `docker build --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t scimd .` then
# `docker run -p 8080:8080 -v scimd-data:/var/lib/scimd scimd`
# (the bundled client's credentials: /var/lib/scimd/bootstrap-client.json in the volume).
# Not built on the machines this project is developed on (no image registry is reachable there).
FROM rust:1-bookworm AS build
WORKDIR /src
# The context has no .git: --version and scimd_build_info name this commit.
ARG GIT_COMMIT=unknown
ENV SCIMD_GIT_COMMIT=$GIT_COMMIT
COPY . .
RUN cargo build --release -p scimd --locked \
 && strip target/release/scimd

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system scimd \
 && useradd --system --gid scimd --home-dir /var/lib/scimd --shell /usr/sbin/nologin scimd \
 && install -d -o scimd -g scimd -m 0750 /var/lib/scimd
COPY --from=build /src/target/release/scimd /usr/bin/scimd
USER scimd
WORKDIR /var/lib/scimd
ENV SCIMD_LISTEN=0.0.0.0:8080 \
    SCIMD_DATA_DIR=/var/lib/scimd
VOLUME ["/var/lib/scimd"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/bin/scimd", "healthcheck"]
ENTRYPOINT ["/usr/bin/scimd"]
CMD ["serve"]
