package policy

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

// glob is a compiled pattern where * matches any run of bytes other than
// '/', ** matches any run of bytes, and every other byte matches itself.
// It is matched by simulating its automaton over a bit set, so matching is
// linear in the input, never backtracks and never allocates.
type glob struct {
	lit  []byte // per state: the byte that leaves it, for literal states
	star uint64 // states that are * (loop on any byte but '/')
	any  uint64 // states that are ** (loop on any byte)
	n    int    // number of states; state n accepts
	// closure[i]: the states reachable from i without reading (a star
	// may match nothing).
	closure []uint64
	// prefix is the literal run the pattern starts with, checked first;
	// tailAny is true when the rest of the pattern is a single **.
	prefix  string
	tailAny bool
}

// maxGlobStates bounds a pattern so that its states fit one word.
const maxGlobStates = 63

var errGlobTooLong = errors.New("too long: at most 63 characters and wildcards (* and ** count one each) from its first wildcard on")

func compileGlob(pattern string) (*glob, error) {
	g := &glob{}
	// The literal run before the first wildcard is compared directly; only
	// the rest becomes states.
	first := strings.IndexByte(pattern, '*')
	if first < 0 {
		first = len(pattern)
	}
	g.prefix, pattern = pattern[:first], pattern[first:]
	for i := 0; i < len(pattern); i++ {
		if g.n == maxGlobStates {
			return nil, errGlobTooLong
		}
		switch {
		case pattern[i] == '*' && i+1 < len(pattern) && pattern[i+1] == '*':
			g.any |= 1 << g.n
			i++
			for i+1 < len(pattern) && pattern[i+1] == '*' {
				i++ // *** is **
			}
			g.lit = append(g.lit, 0)
		case pattern[i] == '*':
			g.star |= 1 << g.n
			g.lit = append(g.lit, 0)
		default:
			g.lit = append(g.lit, pattern[i])
		}
		g.n++
	}
	g.tailAny = g.n == 1 && g.any&1 != 0
	g.closure = make([]uint64, g.n+1)
	for i := g.n; i >= 0; i-- {
		g.closure[i] = 1 << i
		if i < g.n && (g.star|g.any)&(1<<i) != 0 {
			g.closure[i] |= g.closure[i+1]
		}
	}
	return g, nil
}

// match reports whether s matches the whole pattern.
func (g *glob) match(s string) bool {
	if len(s) < len(g.prefix) || s[:len(g.prefix)] != g.prefix {
		return false
	}
	if g.tailAny {
		return true
	}
	cur := g.closure[0]
	for i := len(g.prefix); i < len(s) && cur != 0; i++ {
		c := s[i]
		var next uint64
		for set := cur; set != 0; set &= set - 1 {
			st := bits.TrailingZeros64(set)
			if st == g.n {
				continue
			}
			bit := uint64(1) << st
			switch {
			case g.any&bit != 0:
				next |= g.closure[st]
			case g.star&bit != 0:
				if c != '/' {
					next |= g.closure[st]
				}
			case g.lit[st] == c:
				next |= g.closure[st+1]
			}
		}
		cur = next
	}
	return cur&(1<<g.n) != 0
}

// hasWildcard reports whether a pattern has a * at all.
func hasWildcard(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] == '*' {
			return true
		}
	}
	return false
}

func (g *glob) String() string { return fmt.Sprintf("glob(%d states)", g.n) }
