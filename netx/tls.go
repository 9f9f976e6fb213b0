package netx

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/pln-mesh/pln/oplog"
)

// A node's TLS identity is its ed25519 node key, in a self-signed
// certificate made at start. Nothing about the certificate matters but the
// key: who may connect is decided by the view, not by a CA.

// ALPN protocols. A member speaks protoMesh; a joiner, which is not yet a
// member, may only speak protoJoin, and a connection on it carries nothing
// but the join protocol.
const (
	protoMesh = "pln/1"
	protoJoin = "pln-join/1"
)

// certificate makes a self-signed certificate for priv.
func certificate(priv ed25519.PrivateKey) (tls.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pln " + oplog.KeyOf(priv).Short()},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}

// peerKey returns the ed25519 key a TLS peer presented.
func peerKey(cs tls.ConnectionState) (oplog.Key, error) {
	if len(cs.PeerCertificates) == 0 {
		return oplog.Key{}, errors.New("peer presented no certificate")
	}
	pub, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return oplog.Key{}, fmt.Errorf("peer key is %T, not ed25519", cs.PeerCertificates[0].PublicKey)
	}
	var k oplog.Key
	copy(k[:], pub)
	return k, nil
}

// admitFunc decides whether a key may speak the mesh protocol.
type admitFunc func(oplog.Key) error

// tlsConfig returns the TLS configuration for both ends of the mesh. Both
// sides present their node certificate; both check the other's key against
// the view (admit) on every handshake, except that a server lets anyone
// speak the join protocol.
func tlsConfig(cert tls.Certificate, admit admitFunc, protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		ClientAuth:         tls.RequireAnyClientCert,
		InsecureSkipVerify: true, // no CA: VerifyConnection checks the key against the view
		NextProtos:         protos,
		VerifyConnection: func(cs tls.ConnectionState) error {
			k, err := peerKey(cs)
			if err != nil {
				return err
			}
			c := cs.PeerCertificates[0]
			if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
				return fmt.Errorf("peer certificate is not self-signed by its key: %w", err)
			}
			if cs.NegotiatedProtocol == protoJoin {
				return nil
			}
			return admit(k)
		},
	}
}
