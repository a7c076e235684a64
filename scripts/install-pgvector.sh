#!/usr/bin/env bash
# pgvector for Debian's PostgreSQL, built from the source tarball in the Debian archive
# (bookworm ships no pgvector package). Idempotent: does nothing when this version is
# already installed for every PostgreSQL major version on the machine. Needs root (apt,
# and the server's extension directory). `make system-deps` runs it.
set -euo pipefail

VERSION=0.8.0
MD5=a0a009e5d1ac9aa2b9d69241adcce307
URL="http://deb.debian.org/debian/pool/main/p/pgvector/pgvector_${VERSION}.orig.tar.gz"

majors=$(ls /usr/lib/postgresql 2>/dev/null || true)
if [ -z "$majors" ]; then
  echo "install-pgvector: no PostgreSQL server in /usr/lib/postgresql (apt install postgresql)" >&2
  exit 1
fi

missing=""
for major in $majors; do
  control="/usr/share/postgresql/$major/extension/vector.control"
  grep -qs "default_version = '$VERSION'" "$control" || missing="$missing $major"
done
[ -z "$missing" ] && exit 0

pkgs="make gcc curl ca-certificates"
for major in $missing; do pkgs="$pkgs postgresql-server-dev-$major"; done
# shellcheck disable=SC2086
dpkg -s $pkgs >/dev/null 2>&1 || {
  apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -sSfL --retry 3 -o "$work/pgvector.tar.gz" "$URL"
echo "$MD5  $work/pgvector.tar.gz" | md5sum -c --quiet -
tar xzf "$work/pgvector.tar.gz" -C "$work"
for major in $missing; do
  src="$work/build-$major"
  cp -r "$work/pgvector-$VERSION" "$src"
  # with_llvm=no: no JIT bitcode, so no clang is needed at build time. OPTFLAGS="":
  # no -march=native, so the library runs on any x86-64 machine it is copied to.
  make -C "$src" -s PG_CONFIG="/usr/lib/postgresql/$major/bin/pg_config" \
    with_llvm=no OPTFLAGS="" >/dev/null
  make -C "$src" -s PG_CONFIG="/usr/lib/postgresql/$major/bin/pg_config" \
    with_llvm=no OPTFLAGS="" install >/dev/null
  echo "install-pgvector: pgvector $VERSION installed for PostgreSQL $major"
done
