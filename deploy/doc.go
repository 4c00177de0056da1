// Package deploy holds the tests of what operators install: the Helm chart
// (helm/roomengine), the compose file (compose.yaml), the Debian packages and archives
// (debian/, scripts/package.sh) and the container image (Containerfile, scripts/image.sh).
// It is a module of its own so the Kubernetes API types it checks the chart against stay out
// of the server's go.mod; `make test` runs it (`make deploy-test`).
package deploy
