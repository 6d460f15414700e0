package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	spread    = time.Second            // deadlines of the precision scenario span this
	precLead  = 300 * time.Millisecond // first deadline after set-up starts
	stormLead = time.Second            // goroutines must be parked by then
	headroom  = 512                    // fds kept free in the storm, as bench-storm.c does
	quickMax  = 5000                   // storm descriptors in a quick run, as bench-storm.c
)

// eventfd returns a non-blocking eventfd as an *os.File: NewFile sees
// O_NONBLOCK and registers it with the runtime poller.
func eventfd() (*os.File, error) {
	fd, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0,
		syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		return nil, errno
	}
	return os.NewFile(fd, "eventfd"), nil
}

func openEventfds(n int) ([]*os.File, error) {
	files := make([]*os.File, 0, n)
	for i := 0; i < n; i++ {
		f, err := eventfd()
		if err != nil {
			closeAll(files)
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// threadState is the scheduler state letter of thread tid of this process.
func threadState(tid string) byte {
	b, err := os.ReadFile("/proc/self/task/" + tid + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

// othersAsleep spins until every thread of the process but self sleeps,
// at most one second: the Go counterpart of wait_until_sleeping, so that
// the timed write really has to wake the runtime's poller.
func othersAsleep(self int) {
	me := strconv.Itoa(self)
	giveUp := time.Now().Add(time.Second)
	for time.Now().Before(giveUp) {
		d, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return
		}
		all := true
		for _, e := range d {
			if e.Name() != me && threadState(e.Name()) != 'S' {
				all = false
				break
			}
		}
		if all {
			return
		}
		runtime.Gosched()
	}
}

// wake: a goroutine blocked reading a pipe, woken by a write timestamped
// just before it; scenario 1.
func wake() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	defer w.Close()
	n := count(10000, 2000)
	warm := n / 10
	base := time.Now()
	lat := make(samples, 0, n)
	ready := make(chan struct{})
	done := make(chan error, 1)
	var t0 int64

	go func() {
		buf := make([]byte, 16)
		for i := 0; i < n+warm; i++ {
			ready <- struct{}{}
			_, err := r.Read(buf)
			t1 := int64(time.Since(base))
			if err != nil {
				done <- err
				return
			}
			if i >= warm {
				lat = append(lat, t1-atomic.LoadInt64(&t0))
			}
		}
		done <- nil
	}()
	// The writer keeps its thread, so "every other thread" is well defined.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self := syscall.Gettid()
	one := []byte{1}
	for i := 0; i < n+warm; i++ {
		<-ready
		othersAsleep(self)
		atomic.StoreInt64(&t0, int64(time.Since(base)))
		if _, err := w.Write(one); err != nil {
			return err
		}
	}
	if err := <-done; err != nil {
		return err
	}
	lat = lat.sorted()
	report("wake_latency", lat)
	return dumpCDF(lat, "wake-go.dat")
}

// precision: deadlines spread over one second on eventfds, lateness of
// each timeout against the time read just before SetReadDeadline plus its
// offset; scenario 4.
func precision() error {
	n := count(10000, 2000)
	if room := nofile() - 256; n > room {
		n = room
	}
	files, err := openEventfds(n)
	if err != nil {
		return err
	}
	defer closeAll(files)
	stride := 7919
	for gcd(stride, n) != 1 {
		stride += 2
	}
	base := time.Now()
	late := make(samples, n)
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := 0; i < n; i++ {
		ns := precLead + time.Duration((i*stride)%n)*(spread/time.Duration(n))
		before := time.Since(base)
		if err := files[i].SetReadDeadline(base.Add(before + ns)); err != nil {
			return err
		}
		deadline := int64(before + ns)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var buf [8]byte
			_, err := files[i].Read(buf[:])
			late[i] = int64(time.Since(base)) - deadline
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				failed.Store(fmt.Errorf("read ended with %v, not a timeout", err))
			}
		}(i)
	}
	wg.Wait()
	if e, ok := failed.Load().(error); ok {
		return e
	}
	early := 0
	for _, l := range late {
		if l < 0 {
			early++
		}
	}
	late = late.sorted()
	report("timer_precision", late)
	fact("timer_precision", "early", float64(early))
	return dumpCDF(late, "lateness-go.dat")
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// storm: as many eventfds as the fd limit allows with one deadline; time
// until the last read returns; scenario 5.
func storm() error {
	n := nofile() - headroom
	if *quick && n > quickMax {
		n = quickMax
	}
	files, err := openEventfds(n)
	if err != nil {
		return err
	}
	defer closeAll(files)
	due := time.Now().Add(stormLead)
	ends := make([]time.Time, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		if err := files[i].SetReadDeadline(due); err != nil {
			return err
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var buf [8]byte
			files[i].Read(buf[:])
			ends[i] = time.Now()
		}(i)
	}
	if time.Now().After(due) {
		note("go timer storm: set-up outlasted its %v lead", stormLead)
	}
	wg.Wait()
	last, early := due, 0
	for _, e := range ends {
		if e.After(last) {
			last = e
		}
		if e.Before(due) {
			early++
		}
	}
	fact("timer_storm", "drain", float64(last.Sub(due))/1e6)
	fact("timer_storm", "early", float64(early))
	return nil
}

// rssAnon is this process's RssAnon in KiB.
func rssAnon() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "RssAnon:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, errors.New("no RssAnon in /proc/self/status")
}

// memory: RssAnon growth per registered descriptor (os.File + pollDesc);
// scenario 7.
func memory() error {
	n := count(10000, 2000)
	if room := nofile() - 256; n > room {
		n = room
	}
	runtime.GC()
	debug.FreeOSMemory()
	before, err := rssAnon()
	if err != nil {
		return err
	}
	files, err := openEventfds(n)
	if err != nil {
		return err
	}
	defer closeAll(files)
	runtime.GC()
	after, err := rssAnon()
	if err != nil {
		return err
	}
	fact("memory", "per_descriptor", float64(after-before)*1024/float64(n))
	return nil
}
