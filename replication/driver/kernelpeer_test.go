package driver

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/replication"
)

// The first bytes a kernel DRBD 8.4.11 sends, from the real capture
// (protocol/testdata/drbd84-streams, stream1 and stream2): the connecting
// side's P_INITIAL_DATA / P_INITIAL_META (h80, no payload) and
// P_CONNECTION_FEATURES (protocol 86..101, flags 0xf, padding to 72).
var (
	kernelInitialData = mustHex("83740267fff20000")
	kernelInitialMeta = mustHex("83740267fff10000")
	kernelFeatures    = mustHex("83740267fffe0048" + "00000056" + "0000000f" + "00000065" + strings.Repeat("00", 60))
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// A peer that speaks exactly the kernel's first exchange: our connector
// accepts its sockets or connects to it in either order, our first
// packets are the kernel's bytes, and after P_CONNECTION_FEATURES the
// next packet is in the agreed h100 dialect.
func TestKernelPeerFirstExchange(t *testing.T) {
	t.Parallel()
	for _, weFirst := range []bool{true, false} {
		name := "peer-connects-first"
		if weFirst {
			name = "we-connect-first"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			nodes := newPair(t, pairOpts{})
			us := nodes[alpha]
			peerAddr := fmt.Sprintf("127.0.0.2:%d", us.res.set.peer.Port)
			ourAddr := us.res.set.local.String()
			dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
			// dialUs retries until our listener is up (Connect starts it
			// asynchronously).
			dialUs := func() net.Conn {
				for {
					c, err := dialer.DialContext(ctx, "tcp", ourAddr)
					if err == nil {
						return c
					}
					select {
					case <-ctx.Done():
						t.Fatalf("cannot reach our listener: %v", err)
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
			readN := func(c net.Conn, n int) []byte {
				b := make([]byte, n)
				require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
				_, err := io.ReadFull(c, b)
				require.NoError(t, err)
				return b
			}

			require.NoError(t, us.res.Attach(ctx))
			var ln net.Listener
			var err error
			if weFirst {
				ln, err = net.Listen("tcp", peerAddr)
				require.NoError(t, err)
				defer ln.Close()
			}
			require.NoError(t, us.res.Connect(ctx, false))

			var data, meta net.Conn
			if weFirst {
				data, err = ln.Accept()
				require.NoError(t, err)
				require.Equal(t, kernelInitialData, readN(data, 8), "our P_INITIAL_DATA")
				meta = dialUs()
				_, err = meta.Write(kernelInitialMeta)
				require.NoError(t, err)
			} else {
				data = dialUs()
				_, err = data.Write(kernelInitialData)
				require.NoError(t, err)
				ln, err = net.Listen("tcp", peerAddr)
				require.NoError(t, err)
				defer ln.Close()
				meta, err = ln.Accept()
				require.NoError(t, err)
				first := readN(meta, 8)
				if bytes.Equal(first, kernelInitialData) {
					// Our connector dialed before it had read the first
					// packet of the socket we opened: the two data sockets
					// crossed, as DRBD's can. It keeps the accepted one
					// ("initial packet S crossed") and dials again for
					// the meta socket. (A flake under -race before.)
					meta.Close()
					meta, err = ln.Accept()
					require.NoError(t, err)
					first = readN(meta, 8)
				}
				require.Equal(t, kernelInitialMeta, first, "our P_INITIAL_META")
			}
			defer data.Close()
			defer meta.Close()

			// Our P_CONNECTION_FEATURES: the kernel's, with the features
			// gdrbd implements (TRIM | WZEROES).
			want := append([]byte(nil), kernelFeatures...)
			want[8+7] = 0x09
			require.Equal(t, want, readN(data, len(want)), "our P_CONNECTION_FEATURES")
			_, err = data.Write(kernelFeatures)
			require.NoError(t, err)
			// Agreed 101: the next packet (P_PROTOCOL) has an h100 header.
			h := readN(data, 16)
			require.Equal(t, mustHex("8620ec20"+"0000"+"000b"), h[:8], "h100 P_PROTOCOL after the agreement")
			st := waitState(t, ctx, us, "WFReportParams", func(s Status) bool { return s.State.Conn == replication.WFReportParams })
			require.True(t, us.logged("Agreed network protocol version 101"))
			require.Equal(t, replication.WFReportParams, st.State.Conn)

			// The peer goes away: we keep trying.
			data.Close()
			meta.Close()
			waitState(t, ctx, us, "WFConnection", func(s Status) bool { return s.State.Conn == replication.WFConnection })
			require.NoError(t, us.res.Down(context.Background()))
		})
	}
}
