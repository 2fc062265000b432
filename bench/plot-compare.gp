# bench/plot-compare.gp: the plots of bench/compare-spire.  gnuplot -e
# "D='datadir'; IMG='outdir'" plot-compare.gp; D holds tput-*.dat (clients,
# repeated, fresh, validate calls/s), streams-*.all (streams, VmRSS KiB),
# cost-*.dat (entries, cold p50 ms, cold p99 ms) and startup.dat (entries,
# cubeid ms, spire ms).
set terminal pngcairo size 800,500 noenhanced
set grid
set key top left

set output IMG.'/compare-jwt-throughput.png'
set title 'FetchJWTSVID / ValidateJWTSVID throughput, go-spiffe client (reused connection)'
set xlabel 'clients'
set ylabel 'calls/s'
set logscale y
set xtics (1, 16)
plot D.'/tput-cubeid.dat' u 1:2 w lp t 'cubeid, repeated audience', \
     D.'/tput-spire.dat'  u 1:2 w lp t 'SPIRE, repeated audience', \
     D.'/tput-cubeid.dat' u 1:3 w lp t 'cubeid, fresh audience', \
     D.'/tput-spire.dat'  u 1:3 w lp t 'SPIRE, fresh audience', \
     D.'/tput-cubeid.dat' u 1:4 w lp t 'cubeid, ValidateJWTSVID', \
     D.'/tput-spire.dat'  u 1:4 w lp t 'SPIRE, ValidateJWTSVID'
unset logscale y
set xtics autofreq

set output IMG.'/compare-rss-streams.png'
set title 'agent RSS against open FetchX509SVID streams (go-spiffe)'
set xlabel 'streams'
set ylabel 'VmRSS, MiB'
plot D.'/streams-cubeid.all' u 1:($2/1024) w lp t 'cubeid-agent', \
     D.'/streams-spire.all'  u 1:($2/1024) w lp t 'spire-agent'

set output IMG.'/compare-cost-entries.png'
set title 'cost against registration entries'
set xlabel 'entries'
set ylabel 'ms'
set logscale x
set logscale y
plot D.'/cost-cubeid.dat' u 1:2 w lp t 'cubeid, cold FetchX509SVID p50', \
     D.'/cost-spire.dat'  u 1:2 w lp t 'SPIRE, cold FetchX509SVID p50', \
     D.'/cost-cubeid.dat' u 1:3 w lp t 'cubeid, cold FetchX509SVID p99', \
     D.'/cost-spire.dat'  u 1:3 w lp t 'SPIRE, cold FetchX509SVID p99', \
     D.'/startup.dat'     u 1:2 w lp t 'cubeid, startup to first SVID', \
     D.'/startup.dat'     u 1:3 w lp t 'SPIRE, startup to first SVID'
