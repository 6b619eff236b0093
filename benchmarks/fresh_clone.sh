# Sourced by benchmarks/tiny_repro.sh and benchmarks/ablate.sh.
# fresh_clone REV DIR: replace DIR with a clone of this repo checked out at REV, using this repo's
# .venv, and cd into it; sets $repo to this repo's root.
fresh_clone() {
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    rm -rf "$2"
    git clone -q "$repo" "$2"
    cd "$2"
    git checkout -q "$1"
    ln -s "$repo/.venv" .venv
}
