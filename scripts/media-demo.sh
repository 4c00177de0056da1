#!/usr/bin/env bash
# media-demo.sh — the self-hosted media path on this machine: nginx with the rtmp module
# (docs/nginx-rtmp.conf as it is: RTMP on 127.0.0.1:1935, /stat on 127.0.0.1:8088) and the
# server with mix: ffmpeg on 127.0.0.1:4000. Called by `make media-demo` (which builds
# bin/appserver and installs nginx, libnginx-mod-rtmp and ffmpeg first). It prints the
# commands that publish two test streams and watch the mix; Ctrl-C stops what it started.
# See docs/self-hosted.md.
#
# Environment:
#   MEDIA_DIR=   where nginx's files, the server's data and the logs go; empty makes a
#                temporary directory that is removed on exit (a given one is kept)
#   MEDIA_BIN=bin/appserver
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${MEDIA_BIN:-bin/appserver}
SECRET=change-me
die() { echo "media-demo: $*" >&2; exit 2; }
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || die "nginx not found: apt-get install nginx libnginx-mod-rtmp"
[[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]] || die "the rtmp module is missing: apt-get install libnginx-mod-rtmp"
command -v ffmpeg >/dev/null || die "ffmpeg not found: apt-get install ffmpeg"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

port_busy() { { (exec 3<>"/dev/tcp/127.0.0.1/$1"); } 2>/dev/null; }
for p in 1935 8088 4000; do
  port_busy $p && die "port $p is in use (the demo uses docs/nginx-rtmp.conf's ports 1935, 8088 and 4000)"
done

DIR=${MEDIA_DIR:-}
KEEP=1
if [[ -z $DIR ]]; then
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/roomengine-media.XXXXXX")
  KEEP=0
fi
mkdir -p "$DIR"
NGINX_PID=
APP_PID=
cleanup() {
  trap - EXIT
  [[ -n $APP_PID ]] && kill -TERM "$APP_PID" 2>/dev/null && wait "$APP_PID" 2>/dev/null || true
  [[ -n $NGINX_PID ]] && kill -TERM "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null || true
  if ((KEEP == 0)); then rm -rf "$DIR"; else echo "logs kept in $DIR"; fi
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# The documented file, with nginx's own files (pid, logs, temp) in $DIR.
sed -e "s#^worker_processes 1;#worker_processes 1;\npid $DIR/nginx.pid;\nerror_log $DIR/nginx-error.log info;#" \
    -e "s#^http {#http {\n    access_log $DIR/nginx-access.log;\n    client_body_temp_path $DIR/cb;\n    proxy_temp_path $DIR/px;\n    fastcgi_temp_path $DIR/fc;\n    uwsgi_temp_path $DIR/uw;\n    scgi_temp_path $DIR/sc;#" \
    -e "s#/var/lib/roomengine/hls#$DIR/hls#g" \
    docs/nginx-rtmp.conf > "$DIR/nginx.conf"
# nginx's workers may run as another user (nobody, when started as root): they write HLS there.
mkdir -p "$DIR/hls"
chmod 755 "$DIR"
chmod 777 "$DIR/hls"
"$NGINX" -p "$DIR/" -c "$DIR/nginx.conf" -e "$DIR/nginx-error.log" -g 'daemon off;' &
NGINX_PID=$!

APPSERVER_IP=127.0.0.1 APPSERVER_PORT=4000 APPSERVER_DATADIR="$DIR/data" APPSERVER_MIX=ffmpeg \
APPSERVER_RTMPHOST=127.0.0.1:1935 APPSERVER_PLAYHOST=127.0.0.1:1935 APPSERVER_APPNAME=DemoApp \
APPSERVER_AUTHKEY=${APPSERVER_AUTHKEY:-demo-auth-key} APPSERVER_MEDIA_HOOKSECRET=$SECRET \
APPSERVER_MEDIA_STATURL=http://127.0.0.1:8088/stat \
APPSERVER_MEDIA_PLAYURL_HLS='http://127.0.0.1:8088/hls/{stream}.m3u8' APPSERVER_MEDIA_PLAYURL_FLV='rtmp://{playHost}/{appName}/{stream}' \
APPSERVER_FFMPEG_HEIGHT=${APPSERVER_FFMPEG_HEIGHT:-240} \
  "$BIN" >"$DIR/appserver.log" 2>&1 &
APP_PID=$!
for _ in $(seq 100); do
  port_busy 4000 && port_busy 1935 && break
  sleep 0.1
done
port_busy 4000 || die "the server did not start: see $DIR/appserver.log"

B=http://127.0.0.1:4000
# field NAME: the string value of NAME in the JSON answer on stdin (ids and URLs have no quotes).
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
U1=$(curl -s -d name=alice $B/login | field id)
U2=$(curl -s -d name=bob $B/login | field id)
ROOM1=$(curl -s -d uid="$U1" $B/live/create)
ROOM2=$(curl -s -d uid="$U2" $B/live/create)
R1=$(field roomId <<<"$ROOM1") P1=$(field rtmpUrl <<<"$ROOM1")
R2=$(field roomId <<<"$ROOM2") P2=$(field rtmpUrl <<<"$ROOM2")

cat <<MSG
nginx-rtmp on rtmp://127.0.0.1:1935 (stats http://127.0.0.1:8088/stat), the server on $B
(mix: ffmpeg; logs in $DIR). Two hosts have rooms: alice $R1, bob $R2.

1. Publish a test stream to each room (two more terminals):
   ffmpeg -re -f lavfi -i testsrc=size=320x240:rate=15 -f lavfi -i sine=frequency=440 -c:v libx264 -preset ultrafast -tune zerolatency -g 30 -c:a aac -f flv '$P1'
   ffmpeg -re -f lavfi -i testsrc2=size=320x240:rate=15 -f lavfi -i sine=frequency=660 -c:v libx264 -preset ultrafast -tune zerolatency -g 30 -c:a aac -f flv '$P2'

2. Start a co-streaming call between them (side by side):
   curl -d 'inviterUid=$U1&inviteeUid=$U2&liveRoomId=$R1&inviterType=2&type=side_by_side' $B/videocall/invite
   curl -d 'status=1&inviterUid=$U1&inviteeUid=$U2&inviterType=2&inviteeType=2&type=side_by_side' $B/videocall/feedback

3. Watch the mix (push 5 says it flows; follow pushes with: bin/appserver watch -addr 127.0.0.1:4000 -topic $R1):
   ffplay rtmp://127.0.0.1:1935/DemoApp/${R1}_mix
   (or HLS, a few seconds behind: ffplay http://127.0.0.1:8088/hls/${R1}_mix.m3u8)

4. End the call: curl -d 'closeRoomId=$R1&notifiedRoomId=$R2' $B/videocall/close

Ctrl-C stops nginx and the server.
MSG
wait -n "$NGINX_PID" "$APP_PID" || true
echo "media-demo: nginx or the server exited (see $DIR)" >&2
