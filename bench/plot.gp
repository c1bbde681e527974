# plot.gp - turns herd_bench's sweep CSV (--csv FILE) into a PNG: bus bandwidth and time per
# allreduce, herd against MPI_Allreduce, with the min-max range of the time as error bars.
#
#   gnuplot -e "csv='sweep.csv'; png='sweep.png'" bench/plot.gp
#
# CSV columns: 1 bytes, 2 iters, 3-5 herd us median/min/max, 6 herd algbw, 7 herd busbw,
# 8-10 MPI us median/min/max, 11 MPI algbw, 12 MPI busbw, 13 herd/MPI time (GB/s = 1e9 B/s).
if (!exists("csv")) csv = 'sweep.csv'
if (!exists("png")) png = 'sweep.png'

set datafile separator ','
set terminal png size 1200,500
set output png
set multiplot layout 1,2 title sprintf('herd vs MPI_Allreduce (%s)', csv) noenhanced

set logscale x 2
set format x '%.0b%B'
set xlabel 'message size (bytes)'
set grid
set key top left

set ylabel 'busbw (GB/s), from the median time'
plot csv using 1:7 skip 1 with linespoints lw 2 title 'herd', \
     csv using 1:12 skip 1 with linespoints lw 2 title 'MPI\_Allreduce'

set logscale y 10
set ylabel 'time per allreduce (us): median, min-max'
plot csv using 1:3:4:5 skip 1 with yerrorlines lw 2 title 'herd', \
     csv using 1:8:9:10 skip 1 with yerrorlines lw 2 title 'MPI\_Allreduce'

unset multiplot
