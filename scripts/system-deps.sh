#!/usr/bin/env bash
# Install the Debian packages that tests, benchmarks and the demo need: the documentation
# corpus of ../shared/eval/README.md, Chromium and CJK fonts for browser tests, unzip and
# a JDK for Elasticsearch. Does nothing when all are present (no network needed then).
set -euo pipefail
PACKAGES=(
  debian-faq debian-faq-de debian-faq-fr debian-faq-it debian-faq-ja debian-faq-ko
  debian-faq-nl debian-faq-pt debian-faq-ru debian-faq-zh-cn
  debian-reference-en debian-reference-de debian-reference-es debian-reference-fr
  debian-reference-id debian-reference-it debian-reference-ja debian-reference-pt
  debian-reference-pt-br debian-reference-zh-cn debian-reference-zh-tw
  installation-guide-amd64 python3.11-doc postgresql-doc-15
  chromium fonts-noto-cjk unzip curl openssl
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Elasticsearch 8 needs Java 17+.
ls /usr/lib/jvm/*/bin/java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system-deps.sh: all Debian packages present" >&2
  exit 0
fi
SUDO=""
[[ "$(id -u)" == "0" ]] || SUDO="sudo"
echo "system-deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
