package binlog

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"filippo.io/edwards25519"
)

// Capability flags (protocol::CapabilityFlags).
const (
	capLongPassword     = 0x1
	capLongFlag         = 0x4
	capProtocol41       = 0x200
	capTransactions     = 0x2000
	capSecureConnection = 0x8000
	capPluginAuth       = 0x80000
	capPluginAuthLenenc = 0x200000
)

const clientCaps = capLongPassword | capLongFlag | capProtocol41 | capTransactions |
	capSecureConnection | capPluginAuth | capPluginAuthLenenc

// Authentication plugins.
const (
	pluginNative      = "mysql_native_password"
	pluginCachingSHA2 = "caching_sha2_password"
	pluginEd25519     = "client_ed25519"
)

// greeting is the server's initial handshake packet (protocol version 10).
type greeting struct {
	version  string
	caps     uint32
	scramble []byte
	plugin   string
}

func parseGreeting(p []byte) (greeting, error) {
	var g greeting
	if len(p) == 0 || p[0] == pktErr {
		return g, fmt.Errorf("binlog: server refused the connection: %w", parseError(p))
	}
	if p[0] != 10 {
		return g, fmt.Errorf("binlog: handshake protocol %d, want 10", p[0])
	}
	i := bytes.IndexByte(p[1:], 0)
	if i < 0 || len(p) < 1+i+1+4+8+1+2 {
		return g, errors.New("binlog: short handshake packet")
	}
	g.version = string(p[1 : 1+i])
	p = p[1+i+1+4:] // version, NUL, connection id
	g.scramble = append([]byte(nil), p[:8]...)
	g.caps = uint32(binary.LittleEndian.Uint16(p[9:11]))
	p = p[11:]
	if len(p) < 1+2+2+1+10 {
		return g, nil
	}
	g.caps |= uint32(binary.LittleEndian.Uint16(p[3:5])) << 16
	authLen := int(p[5])
	p = p[16:]
	if g.caps&capSecureConnection != 0 {
		n := max(13, authLen-8)
		if len(p) < n {
			return g, errors.New("binlog: short handshake packet")
		}
		g.scramble = append(g.scramble, bytes.TrimRight(p[:n], "\x00")...)
		p = p[n:]
	}
	if g.caps&capPluginAuth != 0 {
		g.plugin = string(bytes.TrimRight(p, "\x00"))
	}
	return g, nil
}

// handshake reads the greeting, answers it and runs the authentication
// exchange to its OK.
func (c *Conn) handshake() error {
	p, err := c.readPacket()
	if err != nil {
		return err
	}
	g, err := parseGreeting(p)
	if err != nil {
		return err
	}
	c.version = strings.TrimPrefix(g.version, "5.5.5-")
	c.mariadb = strings.Contains(g.version, "MariaDB")
	if g.caps&capProtocol41 == 0 || g.caps&capSecureConnection == 0 {
		return fmt.Errorf("binlog: server %s is too old (no protocol 4.1 authentication)", c.version)
	}
	c.caps = clientCaps & g.caps
	plugin := g.plugin
	if plugin == "" {
		plugin = pluginNative
	}
	resp, err := c.authResponse(plugin, g.scramble)
	if err != nil {
		// The server's default may be one this client lacks; the user's own
		// plugin comes with the auth-switch request.
		plugin, resp = pluginNative, scrambleNative(g.scramble[:min(20, len(g.scramble))], c.cfg.Password)
	}
	if err := c.writePacket(c.handshakeResponse(plugin, resp)); err != nil {
		return err
	}
	return c.authResult(plugin, g.scramble)
}

func (c *Conn) handshakeResponse(plugin string, auth []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, c.caps)
	b = binary.LittleEndian.AppendUint32(b, maxPayload)
	b = append(b, 45) // utf8mb4_general_ci
	b = append(b, make([]byte, 23)...)
	b = append(append(b, c.cfg.User...), 0)
	if c.caps&capPluginAuthLenenc != 0 {
		b = appendLenenc(b, uint64(len(auth)))
	} else {
		b = append(b, byte(len(auth)))
	}
	b = append(b, auth...)
	if c.caps&capPluginAuth != 0 {
		b = append(append(b, plugin...), 0)
	}
	return b
}

// authResponse is the first answer of plugin to the server's scramble.
func (c *Conn) authResponse(plugin string, scramble []byte) ([]byte, error) {
	switch plugin {
	case pluginNative:
		return scrambleNative(scramble[:min(20, len(scramble))], c.cfg.Password), nil
	case pluginCachingSHA2:
		return scrambleSHA256(scramble[:min(20, len(scramble))], c.cfg.Password), nil
	case pluginEd25519:
		return signEd25519(scramble, c.cfg.Password), nil
	}
	return nil, fmt.Errorf("binlog: the server asks for authentication plugin %q, which this client does not speak", plugin)
}

// authResult reads the server's answers until OK or an error: an auth
// switch request, or caching_sha2_password's extra rounds.
func (c *Conn) authResult(plugin string, scramble []byte) error {
	for round := 0; round < 8; round++ {
		p, err := c.readPacket()
		if err != nil {
			return err
		}
		switch {
		case len(p) == 0:
			return errors.New("binlog: empty packet during authentication")
		case p[0] == pktOK:
			return nil
		case p[0] == pktErr:
			return fmt.Errorf("binlog: log in as %q: %w", c.cfg.User, parseError(p))
		case p[0] == pktEOF: // auth switch request: plugin name, NUL, its data
			name, data, _ := bytes.Cut(p[1:], []byte{0})
			plugin, scramble = string(name), bytes.TrimSuffix(data, []byte{0})
			if plugin == pluginEd25519 {
				scramble = data
			}
			resp, err := c.authResponse(plugin, scramble)
			if err != nil {
				return err
			}
			if err := c.writePacket(resp); err != nil {
				return err
			}
		case p[0] == 0x01 && plugin == pluginCachingSHA2:
			if err := c.cachingSHA2More(p[1:], scramble); err != nil {
				return err
			}
		default:
			return fmt.Errorf("binlog: unexpected packet 0x%02x during %s authentication", p[0], plugin)
		}
	}
	return errors.New("binlog: authentication does not end")
}

// cachingSHA2More answers caching_sha2_password's "more data": 3 means the
// fast path succeeded (an OK follows), 4 that the server needs the password
// itself, which goes in cleartext only over a unix socket, else encrypted
// with the server's RSA key.
func (c *Conn) cachingSHA2More(data, scramble []byte) error {
	if len(data) == 0 {
		return errors.New("binlog: empty caching_sha2_password packet")
	}
	switch data[0] {
	case 3:
		return nil
	case 4:
		if c.cfg.Network == "unix" {
			return c.writePacket(append([]byte(c.cfg.Password), 0))
		}
		if err := c.writePacket([]byte{2}); err != nil { // request the public key
			return err
		}
		p, err := c.readPacket()
		if err != nil {
			return err
		}
		if len(p) == 0 || p[0] != 0x01 {
			if len(p) > 0 && p[0] == pktErr {
				return fmt.Errorf("binlog: log in as %q: %w", c.cfg.User, parseError(p))
			}
			return errors.New("binlog: caching_sha2_password: no public key from the server")
		}
		enc, err := encryptPassword(p[1:], scramble, c.cfg.Password)
		if err != nil {
			return err
		}
		return c.writePacket(enc)
	}
	return fmt.Errorf("binlog: caching_sha2_password: unexpected state %d", data[0])
}

// encryptPassword is caching_sha2_password's full authentication without
// TLS: the NUL-terminated password XORed with the scramble, RSA-OAEP
// (SHA-1) encrypted with the server's public key (PEM).
func encryptPassword(pemKey, scramble []byte, password string) ([]byte, error) {
	block, _ := pem.Decode(pemKey)
	if block == nil {
		return nil, errors.New("binlog: caching_sha2_password: the server's public key is not PEM")
	}
	var pub *rsa.PublicKey
	if k, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
		pub, _ = k.(*rsa.PublicKey)
	} else if k, err := x509.ParsePKCS1PublicKey(block.Bytes); err == nil {
		pub = k
	}
	if pub == nil || len(scramble) == 0 {
		return nil, errors.New("binlog: caching_sha2_password: unusable public key from the server")
	}
	plain := append([]byte(password), 0)
	for i := range plain {
		plain[i] ^= scramble[i%len(scramble)]
	}
	return rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, plain, nil)
}

// scrambleNative is mysql_native_password:
// SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))).
func scrambleNative(scramble []byte, password string) []byte {
	if password == "" {
		return nil
	}
	h1 := sha1.Sum([]byte(password))
	h2 := sha1.Sum(h1[:])
	h := sha1.New()
	h.Write(scramble)
	h.Write(h2[:])
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= h1[i]
	}
	return out
}

// scrambleSHA256 is caching_sha2_password's fast path:
// SHA256(password) XOR SHA256(SHA256(SHA256(password)) + scramble).
func scrambleSHA256(scramble []byte, password string) []byte {
	if password == "" {
		return nil
	}
	h1 := sha256.Sum256([]byte(password))
	h2 := sha256.Sum256(h1[:])
	h := sha256.New()
	h.Write(h2[:])
	h.Write(scramble)
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= h1[i]
	}
	return out
}

// signEd25519 is MariaDB's client_ed25519: an Ed25519 signature of the
// scramble whose secret key is derived from the password of any length the
// way Ed25519 derives it from a 32-byte seed (SHA-512, clamped low half).
func signEd25519(scramble []byte, password string) []byte {
	h := sha512.Sum512([]byte(password))
	s, _ := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	pub := new(edwards25519.Point).ScalarBaseMult(s).Bytes()
	rh := sha512.New()
	rh.Write(h[32:])
	rh.Write(scramble)
	r, _ := edwards25519.NewScalar().SetUniformBytes(rh.Sum(nil))
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	kh := sha512.New()
	kh.Write(R)
	kh.Write(pub)
	kh.Write(scramble)
	k, _ := edwards25519.NewScalar().SetUniformBytes(kh.Sum(nil))
	S := edwards25519.NewScalar().MultiplyAdd(k, s, r)
	return append(R, S.Bytes()...)
}
