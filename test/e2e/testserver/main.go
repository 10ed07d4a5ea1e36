// Command testserver is the program in the end-to-end tests' container
// image. It is static and has five modes:
//
//	testserver serve ADDR        serve HTTP on ADDR: /hello answers with the
//	                             pod's name, /healthz with ok
//	testserver fetch URL         GET URL until it answers 200 (60 s at
//	                             most), print the body, exit 0; else exit 1
//	testserver cat FILE          print FILE, then exit 0
//	testserver mark DIR ADDR     write the pod's name to DIR/<its name>,
//	                             print "marked <that file>", then serve
//	                             ADDR as serve does
//	testserver post URL BODY     POST BODY (JSON) to the HTTPS URL once,
//	                             trusting any server certificate, as an
//	                             attacker in a pod would; print "status: N"
//	                             and the answer, exit 0
//	testserver get URL           GET URL once, on a new connection; print
//	                             "status: N in Dms" and the body, or
//	                             "error: E in Dms"; exit 0
//	testserver loop URL SECONDS  GET URL every 20 ms for SECONDS over
//	                             keep-alive; print "ok N failed M" and the
//	                             first errors; exit 0
//
// The tests read what fetch, cat and post print from the pod's log.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 3 && (len(os.Args) != 4 || (os.Args[1] != "post" && os.Args[1] != "mark" && os.Args[1] != "loop")) {
		fmt.Fprintln(os.Stderr, "usage: testserver serve ADDR | fetch URL | cat FILE | mark DIR ADDR | post URL BODY | get URL | loop URL SECONDS")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2])
	case "fetch":
		err = fetch(os.Args[2], 60*time.Second)
	case "post":
		err = post(os.Args[2], os.Args[3])
	case "get":
		get(os.Args[2])
	case "loop":
		var secs int
		if _, err = fmt.Sscan(os.Args[3], &secs); err == nil {
			loop(os.Args[2], time.Duration(secs)*time.Second)
		}
	case "mark":
		host, _ := os.Hostname()
		file := filepath.Join(os.Args[2], host)
		if err = os.WriteFile(file, []byte(host+"\n"), 0o644); err == nil { //nolint:gosec // a file for other pods to look for
			fmt.Println("marked", file)
			err = serve(os.Args[3])
		}
	case "cat":
		var b []byte
		if b, err = os.ReadFile(os.Args[2]); err == nil {
			_, err = os.Stdout.Write(b)
		}
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "testserver: %v\n", err)
		os.Exit(1)
	}
}

func serve(addr string) error {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		// ctx is done: the shutdown needs a context of its own.
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown) //nolint:contextcheck // ctx is done: the shutdown needs a context of its own
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func fetch(url string, within time.Duration) error {
	client := &http.Client{Timeout: 3 * time.Second}
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				_, err = os.Stdout.Write(body)
				return err
			}
			err = fmt.Errorf("%s: %s %w", url, resp.Status, rerr)
		}
		if time.Now().After(deadline) {
			return err
		}
		fmt.Fprintf(os.Stderr, "testserver: %v; retrying\n", err)
		time.Sleep(time.Second)
	}
}

// post sends body to url once and prints the answer.
func post(url, body string) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the attacker trusts any server
	}}
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	fmt.Printf("status: %d\n%s\n", resp.StatusCode, answer)
	return nil
}

// get sends one GET on a new connection and prints what came of it, and
// how long it took.
func get(url string) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Get(url)
	if err != nil {
		fmt.Printf("error: %v in %dms\n", err, time.Since(start).Milliseconds())
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Printf("status: %d in %dms\n%s\n", resp.StatusCode, time.Since(start).Milliseconds(), body)
}

// loop sends a GET every 20 ms for d, over keep-alive, and counts.
func loop(url string, d time.Duration) {
	client := &http.Client{Timeout: 2 * time.Second}
	var ok, failed int
	var errs []string
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		if err != nil {
			failed++
			if len(errs) < 5 {
				errs = append(errs, err.Error())
			}
			continue
		}
		ok++
	}
	fmt.Printf("ok %d failed %d\n", ok, failed)
	for _, e := range errs {
		fmt.Println("error:", e)
	}
}
