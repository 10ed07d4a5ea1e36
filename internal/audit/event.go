package audit

import (
	"encoding/json"
	"time"
)

// Schema is the version of the event schema this package writes and reads.
// Additions (new optional fields, new kinds) keep it; any other change makes
// a new one.
const Schema = "kzero.dev/audit/v1"

// TimeFormat is the form of every event's time: RFC 3339, UTC, with all
// nine digits of nanoseconds, so that the times of one file sort as text.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Kind says what an event records, and so which payload it carries.
type Kind string

// Kinds of event. KindCheckpoint is written by a Chain, never by callers.
const (
	KindIssuance   Kind = "issuance"
	KindAdmission  Kind = "admission"
	KindAccess     Kind = "access"
	KindKubernetes Kind = "kubernetes" // reserved for Kubernetes API audit events
	KindCheckpoint Kind = "checkpoint"
)

// Component is the kzero role that wrote an event.
type Component string

// Components, one for each role of the kzero binary.
const (
	ComponentAuthority Component = "authority"
	ComponentAgent     Component = "agent"
	ComponentGateway   Component = "gateway"
	ComponentCLI       Component = "cli"
)

// Outcome is what happened: for issuance, success or failure; for
// admission and access, the effect actually applied, allow or deny.
type Outcome string

// Outcomes.
const (
	OutcomeSuccess Outcome = "success"
	OutcomeFailure Outcome = "failure"
	OutcomeAllow   Outcome = "allow"
	OutcomeDeny    Outcome = "deny"
)

// Event is one audit event. Exactly one payload, the one named by Kind,
// is set. A Recorder fills Schema, Time, ID and Component when they are
// empty; callers fill the rest.
type Event struct {
	// Schema is always Schema.
	Schema string `json:"schema"`
	// Time is when the event happened; written in UTC with TimeFormat.
	Time time.Time `json:"time"`
	// ID is unique to the event: 128 random bits, hex.
	ID string `json:"id"`
	// Component is the role that wrote it.
	Component Component `json:"component"`
	// Kind names the payload.
	Kind Kind `json:"kind"`
	// Outcome is what happened.
	Outcome Outcome `json:"outcome"`
	// Reason is a sentence a person can act on: why it was allowed or
	// denied, what failed and what to do.
	Reason string `json:"reason"`

	Issuance  *Issuance  `json:"issuance,omitempty"`
	Admission *Admission `json:"admission,omitempty"`
	Access    *Access    `json:"access,omitempty"`
}

// eventJSON is Event as written: its time with TimeFormat, in UTC.
type eventJSON struct {
	Schema string `json:"schema"`
	Time   string `json:"time"`
	plainEvent
}

// plainEvent has Event's fields and none of its methods.
type plainEvent Event

func (e *Event) wire() eventJSON {
	return eventJSON{Schema: e.Schema, Time: e.Time.UTC().Format(TimeFormat), plainEvent: plainEvent(*e)}
}

// MarshalJSON writes the event as it appears in the log.
func (e Event) MarshalJSON() ([]byte, error) { return json.Marshal(e.wire()) }
