package audit_test

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/audit"
)

// A gateway records a policy decision: one JSON line on stdout.
func ExampleRecorder_Record() {
	rec, err := audit.NewRecorder(audit.Config{
		Component: audit.ComponentGateway,
		Out:       os.Stdout,
		Now:       func() time.Time { return time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC) },
		Rand:      strings.NewReader("0123456789abcdef"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = rec.Record(audit.Event{
		Kind:    audit.KindAccess,
		Outcome: audit.OutcomeDeny,
		Reason:  audit.ReasonDefaultDeny,
		Access: &audit.Access{
			Source:      audit.Source{User: &audit.User{Issuer: "https://login.example.com", Subject: "u-4821"}},
			Destination: audit.Destination{SPIFFEID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/admin"), Namespace: "shop", Port: 8080},
			Protocol:    "http", Method: "DELETE", Path: "/users/7", Host: "shop.example.com",
			Verdict: audit.VerdictDeny, Mode: audit.ModeEnforce, Enforced: true,
		},
	})
	fmt.Println(err)
	// Output:
	// {"schema":"kzero.dev/audit/v1","time":"2026-07-01T12:00:00.000000000Z","id":"30313233343536373839616263646566","component":"gateway","kind":"access","outcome":"deny","reason":"no rule matched: default deny","access":{"source":{"user":{"issuer":"https://login.example.com","subject":"u-4821"}},"destination":{"spiffeID":"spiffe://cluster.local/ns/shop/sa/admin","namespace":"shop","port":8080},"protocol":"http","method":"DELETE","path":"/users/7","host":"shop.example.com","verdict":"deny","mode":"enforce","enforced":true}}
	// <nil>
}
