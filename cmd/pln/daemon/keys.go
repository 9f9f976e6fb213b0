package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names inside a data directory.
const (
	NodeKeyFile = "node.key"
	RootKeyFile = "root.key"
	StoreFile   = "pln.db"
	SocketFile  = "pln.sock"
	// WasmCacheDir holds compiled seeds, so a restart does not recompile.
	WasmCacheDir = "wasm-cache"
)

// loadKey reads a PKCS #8 PEM ed25519 private key.
func loadKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s is not a PEM private key; move it away and run 'pln id' to make a new one", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T key; pln keys are ed25519", path, k)
	}
	return priv, nil
}

// writeKey stores priv at path with mode 0600, never replacing a file.
func writeKey(path string, priv ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// NodeKey returns the directory's node key, creating the directory and the
// key if there are none.
func NodeKey(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, NodeKeyFile)
	priv, err := loadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return priv, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	_, priv, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeKey(path, priv); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race
			return loadKey(path)
		}
		return nil, fmt.Errorf("write node key: %w", err)
	}
	return priv, nil
}
