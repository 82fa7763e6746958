// remotedialer-bench: the remotedialer column of bench/proxy. One binary, two
// roles, shaped as Clusternet uses github.com/rancher/remotedialer:
//
//	server  accepts the tunnel (a WebSocket over TLS, as an agent dials its
//	        hub) and serves the proxy over HTTP, or HTTPS with --proxy-tls, as
//	        hawser's operator API does on and off loopback:
//	        /proxy/ID/SCHEME/HOST:PORT/PATH is reverse-proxied to
//	        SCHEME://HOST:PORT/PATH through the tunnel of client ID, with
//	        an http.Transport whose DialContext is the tunnel's dialer (TLS
//	        to an https target runs end to end through the tunnel).
//	client  dials the server's tunnel endpoint and dials targets for it.
//
// The tunnel token comes from the environment (REMOTEDIALER_BENCH_TOKEN),
// never the command line.
package main

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rancher/remotedialer"
	"github.com/sirupsen/logrus"
)

const tokenEnv = "REMOTEDIALER_BENCH_TOKEN"

func main() {
	logrus.SetLevel(logrus.WarnLevel)
	if len(os.Args) < 2 {
		fatalf("usage: remotedialer-bench server|client [flags]")
	}
	token := os.Getenv(tokenEnv)
	if token == "" {
		fatalf("%s is not set", tokenEnv)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch os.Args[1] {
	case "server":
		runServer(ctx, os.Args[2:], token)
	case "client":
		runClient(ctx, os.Args[2:], token)
	default:
		fatalf("unknown role %q: want server or client", os.Args[1])
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "remotedialer-bench: "+format+"\n", args...)
	os.Exit(2)
}

func loadPool(file string) *x509.CertPool {
	pem, err := os.ReadFile(file)
	if err != nil {
		fatalf("read CA %s: %v", file, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fatalf("no certificate in %s", file)
	}
	return pool
}

func runServer(ctx context.Context, args []string, token string) {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	tunnelAddr := fs.String("tunnel-listen", "127.0.0.1:0", "TLS address clients dial (WebSocket at /connect)")
	proxyAddr := fs.String("proxy-listen", "127.0.0.1:0", "plain HTTP address of the proxy (/proxy/ID/SCHEME/HOST:PORT/PATH)")
	certFile := fs.String("tls-cert-file", "", "serving certificate of the tunnel endpoint")
	keyFile := fs.String("tls-key-file", "", "key of --tls-cert-file")
	targetCA := fs.String("target-ca-file", "", "CA bundle that verifies https targets")
	proxyTLS := fs.Bool("proxy-tls", false, "serve the proxy over TLS too (same certificate)")
	_ = fs.Parse(args)
	if *certFile == "" || *keyFile == "" || *targetCA == "" {
		fatalf("server needs --tls-cert-file, --tls-key-file and --target-ca-file")
	}

	authorize := func(req *http.Request) (string, bool, error) {
		id := req.Header.Get("X-Tunnel-ID")
		given := strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
		ok := id != "" && subtle.ConstantTimeCompare([]byte(given), []byte(token)) == 1
		return id, ok, nil
	}
	tunnels := remotedialer.New(authorize, remotedialer.DefaultErrorWriter)
	proxy := &tunnelProxy{tunnels: tunnels, roots: loadPool(*targetCA), transports: map[string]*http.Transport{}}

	tunnelMux := http.NewServeMux()
	tunnelMux.Handle("/connect", tunnels)
	tunnelListener := listen(*tunnelAddr)
	proxyListener := listen(*proxyAddr)
	tunnelServer := &http.Server{Handler: tunnelMux, ReadHeaderTimeout: 10 * time.Second}
	proxyServer := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	go serve(func() error { return tunnelServer.ServeTLS(tunnelListener, *certFile, *keyFile) })
	go serve(func() error {
		if *proxyTLS {
			return proxyServer.ServeTLS(proxyListener, *certFile, *keyFile)
		}
		return proxyServer.Serve(proxyListener)
	})
	// The parent reads the bound ports from this line.
	fmt.Printf("listening tunnel=%s proxy=%s\n", tunnelListener.Addr(), proxyListener.Addr())
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = proxyServer.Shutdown(shutdown)
	_ = tunnelServer.Shutdown(shutdown)
}

func listen(addr string) net.Listener {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fatalf("listen %s: %v", addr, err)
	}
	return l
}

func serve(run func() error) {
	if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fatalf("serve: %v", err)
	}
}

type tunnelProxy struct {
	tunnels *remotedialer.Server
	roots   *x509.CertPool

	mu         sync.Mutex
	transports map[string]*http.Transport
}

// transport is one per client ID and reused, as Clusternet caches them: idle
// connections through the tunnel stay open between requests.
func (p *tunnelProxy) transport(id string) *http.Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.transports[id]; t != nil {
		return t
	}
	t := &http.Transport{
		DialContext:         p.tunnels.Dialer(id),
		TLSClientConfig:     &tls.Config{RootCAs: p.roots, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 100,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		// The client's Accept-Encoding passes unchanged, as through hawser. (Clusternet's
		// transport leaves Go's default, which asks the target for gzip on the tunnel leg.)
		DisableCompression: true,
	}
	p.transports[id] = t
	return t
}

// ServeHTTP: /proxy/ID/SCHEME/HOST:PORT/PATH?QUERY -> SCHEME://HOST:PORT/PATH?QUERY via the tunnel of ID.
func (p *tunnelProxy) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	parts := strings.SplitN(strings.TrimPrefix(req.URL.Path, "/proxy/"), "/", 4)
	if !strings.HasPrefix(req.URL.Path, "/proxy/") || len(parts) < 3 {
		http.Error(rw, "want /proxy/ID/SCHEME/HOST:PORT/PATH", http.StatusNotFound)
		return
	}
	id, scheme, host := parts[0], parts[1], parts[2]
	if scheme != "http" && scheme != "https" {
		http.Error(rw, fmt.Sprintf("scheme %q: want http or https", scheme), http.StatusBadRequest)
		return
	}
	if !p.tunnels.HasSession(id) {
		http.Error(rw, fmt.Sprintf("no tunnel from client %q", id), http.StatusServiceUnavailable)
		return
	}
	path := "/"
	if len(parts) == 4 {
		path += parts[3]
	}
	target := &url.URL{Scheme: scheme, Host: host, Path: path, RawQuery: req.URL.RawQuery}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL = target
			r.Out.Host = host
		},
		Transport: p.transport(id),
		// As k8s.io/apimachinery's UpgradeAwareHandler, which Clusternet uses (a response
		// without Content-Length, e.g. a kube LIST, is flushed at every write anyway).
		FlushInterval: 200 * time.Millisecond,
		ErrorHandler: func(rw http.ResponseWriter, _ *http.Request, err error) {
			http.Error(rw, fmt.Sprintf("through tunnel %q to %s: %v", id, target.Redacted(), err), http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(rw, req)
}

func runClient(ctx context.Context, args []string, token string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	connect := fs.String("connect", "", "wss://HOST:PORT/connect of the server")
	id := fs.String("id", "", "client ID (the cluster's name)")
	caFile := fs.String("ca-file", "", "CA that verifies the server's certificate")
	_ = fs.Parse(args)
	if *connect == "" || *id == "" || *caFile == "" {
		fatalf("client needs --connect, --id and --ca-file")
	}
	headers := http.Header{"X-Tunnel-ID": {*id}, "Authorization": {"Bearer " + token}}
	dialer := &websocket.Dialer{
		HandshakeTimeout: remotedialer.HandshakeTimeOut,
		TLSClientConfig:  &tls.Config{RootCAs: loadPool(*caFile), MinVersion: tls.VersionTLS12},
	}
	allowAll := func(proto, address string) bool { return proto == "tcp" }
	onConnect := func(context.Context, *remotedialer.Session) error {
		fmt.Println("connected")
		return nil
	}
	// As an agent does: redial until stopped (ClientConnect waits 5 s after an error).
	for ctx.Err() == nil {
		_ = remotedialer.ClientConnect(ctx, *connect, headers, dialer, allowAll, onConnect)
	}
}
