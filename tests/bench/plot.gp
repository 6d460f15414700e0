# latency.png from one bench run's samples:
#   top:    scenario 1, wake latency CDF of netpolld and each baseline
#   bottom: scenario 4, timer lateness CDF of netpolld (batched as the
#           library sends, and each call sent at once), in-process timerfd
#           and Go
# Every .dat file holds "value_us cumulative_fraction" lines, sorted.
# Run as: gnuplot -e "dir='build/bench'" tests/bench/plot.gp
if (!exists("dir")) dir = "build/bench"

# Series whose file is missing (no Go, a bench that failed) are left out.
have(f) = system(sprintf("test -s '%s/%s' && echo 1 || echo 0", dir, f)) eq "1"
series(f, t) = have(f) ? sprintf("'%s/%s' using 1:2 with lines lw 2 title '%s', ", dir, f, t) : ""

set terminal pngcairo size 1100,900 font "sans,10"
set output dir."/latency.png"
set multiplot layout 2,1
set logscale x
set grid xtics ytics mxtics
set key bottom right
set yrange [0:1]
set ylabel "fraction of samples"

set title "1. Wake latency: write() on a pipe to the return of the wait"
set xlabel "latency (us, log scale)"
wake = series("wake-netpolld.dat", "netpolld np\\_wait") . \
       series("wake-floor.dat", "baseline: epoll + IPC one-way (quantile sum)") . \
       series("wake-epoll.dat", "in-process epoll\\_wait") . \
       series("wake-ipc-oneway.dat", "IPC one-way floor (RTT/2)") . \
       series("wake-go.dat", "Go runtime netpoll")
eval "plot ".wake."1/0 notitle"

set title "4. Timer precision: delivery at the client minus the deadline"
set xlabel "lateness (us, log scale; early timeouts, if any, are in the table)"
late = series("lateness-netpolld.dat", "netpolld, library batching") . \
       series("lateness-netpolld-unbatched.dat", "netpolld, each set-deadline sent at once") . \
       series("lateness-timerfd.dat", "in-process timerfd") . \
       series("lateness-go.dat", "Go runtime deadlines")
eval "plot ".late."1/0 notitle"
unset multiplot
