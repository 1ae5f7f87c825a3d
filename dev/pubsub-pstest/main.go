// Command pubsub-pstest serves Google's in-process Pub/Sub fake (pstest) on a TCP port, as a
// stand-in for the gcloud Pub/Sub emulator on machines that do not have it. Clients reach it
// the same way: PUBSUB_EMULATOR_HOST=127.0.0.1:<port>.
package main

import (
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"cloud.google.com/go/pubsub/v2/pstest"
)

func main() {
	port := flag.Int("port", 8085, "TCP port to listen on")
	host := flag.String("host", "127.0.0.1", "address to listen on")
	flag.Parse()

	srv := pstest.NewServerWithAddress(net.JoinHostPort(*host, strconv.Itoa(*port)))
	log.Printf("pstest Pub/Sub server listening on %s", srv.Addr)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	if err := srv.Close(); err != nil {
		log.Printf("close: %v", err)
	}
}
