# kube-org: one static binary on an empty base image, run as a non-root user.
#   docker build -t kube-org/kube-org:0.1.0 .
# The same static build runs without Docker: `make static`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN make static

FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/kube-org /kube-org
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/kube-org"]
CMD ["run"]
