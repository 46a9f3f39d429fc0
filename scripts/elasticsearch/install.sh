#!/usr/bin/env bash
# Build the embedded Elasticsearch node of F4A_ENGINE=elasticsearch from Maven Central jars.
#
#   scripts/elasticsearch/install.sh [VERSION]      (default: $F4A_ES_VERSION or 9.5.3)
#
# Lays out ${F4A_CACHE:-$HOME/.cache/f4a-indexer}/elasticsearch/VERSION/:
#   classpath.txt   the server's jars (Maven repository: $F4A_CACHE/m2)
#   modules/        transport-netty4/ (the real HTTP layer, as in the distribution's modules/)
#                   and f4a-rest-root/ (the launcher's GET / stand-in, see README.md)
#   classes/        the compiled launcher (f4a.ElasticsearchLauncher)
#   java            the java binary to run it with
#   java.args       JVM options + classpath + main class, for `java -Xmx.. @java.args ARGS`
#   stamp           what it was built from; a second run with the same inputs does nothing
# Then start a node with
#   "$(cat DIR/java)" -Xms512m -Xmx512m @DIR/java.args --home H --data D --port P [-E k=v]...
# 8.19.x runs on JDK 17; 9.x needs JDK 21+ ($F4A_JAVA3_HOME, $JAVA_HOME or the Temurin 25 JDK).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="${1:-${F4A_ES_VERSION:-9.5.3}}"
CACHE="${F4A_CACHE:-$HOME/.cache/f4a-indexer}"
M2="$CACHE/m2"
DIR="$CACHE/elasticsearch/$VERSION"
MAJOR="${VERSION%%.*}"
LAUNCHER_SRC="$HERE/src/main/java/f4a/ElasticsearchLauncher.java"

log() { echo "[es-install] $*" >&2; }
die() { echo "[es-install] error: $*" >&2; exit 1; }

case "$MAJOR" in
  8) JAVA_MIN=17; ROOT_API=es8 ;;
  9) JAVA_MIN=21; ROOT_API=es9 ;;
  *) die "Elasticsearch $VERSION: accepted versions are 8.18+ and 9.x (8.19.21 and 9.5.3 tested)" ;;
esac

java_major() { "$1" -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2; exit}'; }

find_jdk() {
  local c m candidates=()
  [[ -n "${F4A_JAVA3_HOME:-}" ]] && candidates+=("$F4A_JAVA3_HOME/bin/java")
  [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
  candidates+=(/usr/lib/jvm/java-17-openjdk-amd64/bin/java /usr/lib/jvm/temurin-25-jdk-amd64/bin/java /usr/lib/jvm/*/bin/java)
  for c in "${candidates[@]}"; do
    [[ -x "$c" && -x "$(dirname "$c")/javac" ]] || continue
    m="$(java_major "$c")" || continue
    if ((m >= JAVA_MIN)); then echo "$c"; return 0; fi
  done
  return 1
}

JAVA="$(find_jdk)" || die "Elasticsearch $VERSION needs a JDK $JAVA_MIN+ (java + javac); set F4A_JAVA3_HOME"
JHOME="$(dirname "$(dirname "$JAVA")")"
RELEASE="$(java_major "$JAVA")"
command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
command -v unzip >/dev/null || die "unzip not found (apt-get install unzip)"

stamp_value() {
  echo "version=$VERSION java=$JAVA"
  cat "$HERE/pom.xml" "$LAUNCHER_SRC" "$HERE"/root-module/common/f4a/esroot/*.java \
    "$HERE/root-module/$ROOT_API"/f4a/esroot/*.java "$HERE/install.sh"
}
if [[ -f "$DIR/stamp" ]] && [[ "$(cat "$DIR/stamp")" == "$(stamp_value)" ]]; then
  log "Elasticsearch $VERSION already built ($DIR)"
  echo "$DIR"
  exit 0
fi

t0=$SECONDS
log "building the Elasticsearch $VERSION node with $JHOME (JDK $RELEASE)"
rm -rf "$DIR" && mkdir -p "$DIR" "$M2"
mvn_args=(-B -q -f "$HERE/pom.xml" "-Dmaven.repo.local=$M2" "-Des.version=$VERSION"
  dependency:build-classpath "-Dmdep.outputFile=$DIR/all.txt")
if ! JAVA_HOME="$JHOME" mvn -o "${mvn_args[@]}" >"$DIR/mvn.log" 2>&1; then
  log "resolving Elasticsearch $VERSION from Maven Central into $M2 (first time only)"
  JAVA_HOME="$JHOME" mvn "${mvn_args[@]}" >"$DIR/mvn.log" 2>&1 \
    || { tail -30 "$DIR/mvn.log" >&2; die "Maven could not resolve Elasticsearch $VERSION (log: $DIR/mvn.log)"; }
fi

# transport-netty4 as the distribution ships it: its jar and its own dependencies in
# modules/transport-netty4. Which jars those are, Elastic's build wrote into the module jar
# (META-INF/plugin-test-build-info.json: one representative class per jar of the bundle).
NETTY_JAR="$(tr ':' '\n' <"$DIR/all.txt" | grep "/transport-netty4-$VERSION.jar$")" \
  || die "transport-netty4-$VERSION.jar not in the resolved classpath"
mapfile -t REPRESENTATIVES < <(unzip -p "$NETTY_JAR" META-INF/plugin-test-build-info.json \
  | sed -n 's/.*"representative_class" *: *"\([^"]*\)".*/\1/p')
((${#REPRESENTATIVES[@]} > 0)) || die "no bundle list in $NETTY_JAR"
MOD="$DIR/modules/transport-netty4"
mkdir -p "$MOD"
: >"$DIR/classpath.txt.tmp"
while IFS= read -r jar || [[ -n "$jar" ]]; do
  [[ -n "$jar" ]] || continue
  in_module=0
  entries="$(unzip -Z1 "$jar")"
  for cls in "${REPRESENTATIVES[@]}"; do
    if grep -qxF "$cls" <<<"$entries"; then in_module=1; break; fi
  done
  if ((in_module)); then cp "$jar" "$MOD/"; else echo "$jar" >>"$DIR/classpath.txt.tmp"; fi
done < <(tr ":" "\n" <"$DIR/all.txt"; echo)
paste -sd: "$DIR/classpath.txt.tmp" >"$DIR/classpath.txt" && rm "$DIR/classpath.txt.tmp"
# The distribution runs the server from the module path, where this module is a named Java
# module that `requires org.elasticsearch.server`. Here the server is on the class path (the
# unnamed module), so the module is loaded the way non-modular plugins are: same descriptor,
# without modulename.
unzip -p "$NETTY_JAR" META-INF/es-plugins/transport-netty4/plugin-descriptor.properties \
  | sed 's/^modulename=.*/modulename=/' >"$MOD/plugin-descriptor.properties"
grep -q '^classname=' "$MOD/plugin-descriptor.properties" || die "no plugin descriptor in $NETTY_JAR"

SCP="$(cat "$DIR/classpath.txt")"
javac_() { "$JHOME/bin/javac" --release "$RELEASE" -nowarn -Xlint:none -encoding UTF-8 -cp "$SCP" "$@"; }

# GET / (the rest-root module is not on Maven Central): a module of its own, outside the
# class path (a class both on the class path and in a module is jar hell to the node).
ROOT_MOD="$DIR/modules/f4a-rest-root"
mkdir -p "$ROOT_MOD" "$DIR/root-classes"
javac_ -d "$DIR/root-classes" "$HERE"/root-module/common/f4a/esroot/*.java \
  "$HERE/root-module/$ROOT_API"/f4a/esroot/*.java 2>"$DIR/javac.log" \
  || { cat "$DIR/javac.log" >&2; die "compiling the GET / module failed"; }
(cd "$DIR/root-classes" && zip -qr "$ROOT_MOD/f4a-rest-root.jar" .)
rm -rf "$DIR/root-classes"
cat >"$ROOT_MOD/plugin-descriptor.properties" <<PROPS
description=f4a-indexer stand-in for the rest-root module (GET /), which is not on Maven Central
version=$VERSION
name=f4a-rest-root
classname=f4a.esroot.RootModulePlugin
java.version=$JAVA_MIN
elasticsearch.version=$VERSION
PROPS

javac_ -d "$DIR/classes" "$LAUNCHER_SRC" 2>"$DIR/javac.log" \
  || { cat "$DIR/javac.log" >&2; die "compiling $LAUNCHER_SRC failed"; }

# java @argfile: the distribution's jvm.options that matter for an embedded node; callers add
# the heap before it and the launcher's arguments after it.
{
  ((RELEASE >= 21)) && echo "--enable-native-access=ALL-UNNAMED"
  ((RELEASE >= 21)) && echo "--add-modules=jdk.incubator.vector"
  echo "-XX:+UseG1GC"
  echo "-XX:-OmitStackTraceInFastThrow"
  echo "-Dfile.encoding=UTF-8"
  echo "-Djava.awt.headless=true"
  echo "-Dio.netty.noUnsafe=true"
  echo "-Dio.netty.noKeySetOptimization=true"
  echo "-Dio.netty.recycler.maxCapacityPerThread=0"
  echo "-Dlog4j.shutdownHookEnabled=false"
  echo "-Dlog4j2.disable.jmx=true"
  echo "-Df4a.es.modules=$DIR/modules"
  echo "-cp"
  echo "\"$DIR/classes:$SCP\""
  echo "f4a.ElasticsearchLauncher"
} >"$DIR/java.args"
echo "$JAVA" >"$DIR/java"
stamp_value >"$DIR/stamp"
log "Elasticsearch $VERSION built in $((SECONDS - t0)) s: $(tr ':' '\n' <"$DIR/classpath.txt" | wc -l) server jars, $(ls "$MOD" | grep -c '\.jar$') transport-netty4 jars"
echo "$DIR"
