#!/usr/bin/env bash
# Copy the ImageNet sample into .device-data/ (ignored by git) so that it travels with the checkout to a GPU machine,
# where ../shared does not: scripts/device_check.sh reads .device-data/imagenet-sample-100.tar.gz (21 MB).
#   scripts/device_data.sh [TARBALL]      (default: ../shared/data/imagenet-sample-100.tar.gz beside the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/data/imagenet-sample-100.tar.gz}
[ -f "$src" ] || { echo "device_data: $src: no such file (pass the path of imagenet-sample-100.tar.gz)" >&2; exit 2; }
mkdir -p .device-data
cp "$src" .device-data/imagenet-sample-100.tar.gz
echo "device_data: .device-data/imagenet-sample-100.tar.gz ($(du -h .device-data/imagenet-sample-100.tar.gz | cut -f1)); carry .device-data to the GPU machine"
