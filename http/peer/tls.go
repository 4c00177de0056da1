package peer

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Where the network between the nodes is not private, their traffic can be TLS
// (cluster.tls.*): every node has a certificate signed by the cluster's CA, presents it as
// server and as client, and accepts only peers whose certificate the CA signed. The
// signature of each message stays on top: TLS hides the messages and proves the
// connection, the signature proves each request.

// TLSConfig is both sides of a node's peer TLS from its certificate, its key and the
// cluster's CA (PEM files). A certificate must name the host the other nodes dial
// (cluster.advertiseAddr, or bindAddr's host): an IP SAN for an address.
func TLSConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.cert/key: %v", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.ca: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster.tls.ca: no PEM certificate in %s", caFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}

// UseTLS makes the client dial its peers with TLS under conf.
func (c *Client) UseTLS(conf *tls.Config) {
	c.tr.CloseIdleConnections()
	c.tr.TLSClientConfig = conf.Clone()
	c.scheme = "https://"
}
