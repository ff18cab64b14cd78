# confab's image: built in a Rust image, run from a slim Debian one.
# Untested here (no Docker engine on the development machine); see
# docs/DEPLOY.md for the set-up that was run.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The server package only; the workspace's bench/ (the load tool) is not built.
RUN cargo build --release --locked -p confab --bin confab

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/confab /usr/local/bin/confab
COPY config/default.toml /etc/confab/default.toml
ENV CONFAB_CONFIG=/etc/confab/default.toml \
    CONFAB_BIND=0.0.0.0:8080 \
    RUST_LOG=info
EXPOSE 8080
USER nobody
ENTRYPOINT ["/usr/local/bin/confab"]
