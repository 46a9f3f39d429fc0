# shellcheck shell=bash
# Podman helpers shared by tests/deploy/container_test.sh, scripts/image_size.sh and
# scripts/builder_image_test.sh (sourced, not run). The caller defines CACHE, skip() and die().

# Private podman configuration (no default ulimits: the sandbox refuses to raise them; runc),
# written only when different and atomically (other runs read it). Skips when podman cannot run.
podman_setup() {
  command -v podman >/dev/null || skip "podman is not installed"
  mkdir -p "$CACHE/podman"
  export CONTAINERS_CONF="$CACHE/podman/containers.conf"
  local conf=$'[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'
  if [[ "$(cat "$CONTAINERS_CONF" 2>/dev/null)"$'\n' != "$conf" ]]; then
    printf '%s' "$conf" >"$CONTAINERS_CONF.$$" && mv -f "$CONTAINERS_CONF.$$" "$CONTAINERS_CONF"
  fi
  podman info >/dev/null 2>&1 || skip "podman cannot run here: $(podman info 2>&1 | tail -1)"
}

# The image the Dockerfile's runtime stage starts FROM.
runtime_base_image() { # DOCKERFILE
  awk 'toupper($1)=="FROM" && tolower($3)=="as" && $4=="runtime" {print $2}' "$1"
}

# The Dockerfile's runtime stage, verbatim, into OUT, except that the binary comes from the build
# context (`COPY f4a-indexer …`) instead of the builder stage, and FROM names BASE if given.
runtime_containerfile() { # DOCKERFILE OUT [BASE]
  awk -v base="${3:-}" '
    toupper($1)=="FROM" && tolower($3)=="as" && $4=="runtime" {on=1; if (base != "") $2=base}
    on' "$1" \
    | sed -E 's#^COPY --from=builder [^ ]+/f4a-indexer #COPY f4a-indexer #' >"$2"
  grep -q '^COPY f4a-indexer ' "$2" || die "could not rewrite the runtime stage's COPY --from=builder"
}
