#!/usr/bin/env bash
# Reproduces the papers' CPU-sized results and writes results/REPORT.md with its figures and
# tables in results/report/.
#
#   scripts/reproduce_cpu.sh              # everything (about 45 minutes on 2 cores, see REPORT.md)
#   JOBS=4 scripts/reproduce_cpu.sh       # runs at a time (default: the number of cores)
#   SECTIONS="l4_badreg gr_boston" scripts/reproduce_cpu.sh   # only these sections
#
# Each section is a sweep plan in plans/reproduce_*.toml: its runs go to results/reproduce/<plan
# name>/ (finished runs are skipped when the script runs again, so an interrupted reproduction
# continues), then `train summarize` writes its table and `train plot` its figures. The prose of
# each section lives in scripts/report/<section>.md: `@table FILE` and `@time SECTION` lines are
# replaced by the generated table and the section's wall time. Sections whose data is not in
# datasets/ (CIFAR, IMDb) are skipped and say so.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-$(nproc)}
ALL_SECTIONS="lossgrad_table3 lossgrad_fig3 l4_badreg gr_boston gr_logistic tlr_robustness cifar_short imdb_short"
SECTIONS=${SECTIONS:-$ALL_SECTIONS}
TRAIN=target/release/train
RUNS=results/reproduce
FIGURES=results/report
TIMES=$FIGURES/times.txt

cargo build --release -p steplab-train
mkdir -p "$RUNS" "$FIGURES"
touch "$TIMES"

# Records a section's wall time in $TIMES: seconds added to what earlier invocations recorded
# (an interrupted reproduction that continues counts both parts; a rerun that finds every run
# finished adds about nothing), or `skipped`.
record_time() {
    local section=$1 seconds=$2 before
    before=$(awk -v s="$section" '$1 == s && $2 ~ /^[0-9]+$/ { print $2 }' "$TIMES")
    grep -v "^$section " "$TIMES" > "$TIMES.tmp" || true
    if [ "$seconds" = skipped ]; then
        echo "$section skipped" >> "$TIMES.tmp"
    else
        echo "$section $(( ${before:-0} + seconds ))" >> "$TIMES.tmp"
    fi
    mv "$TIMES.tmp" "$TIMES"
}

# Runs a plan (skipping finished runs) and records its time under the section's name, unless
# every run was finished before (then nothing ran and nothing is added).
sweep() {
    local section=$1 plan=$2 start log
    start=$(date +%s)
    log=$(mktemp)
    "$TRAIN" sweep "plans/$plan.toml" --jobs "$JOBS" 2>&1 | tee "$log"
    if ! grep -q ": 0 finished, [0-9]* skipped (finished before), 0 failed" "$log"; then
        record_time "$section" $(( $(date +%s) - start ))
    fi
    rm -f "$log"
}

summarize() {
    local out=$1; shift
    "$TRAIN" summarize "$@" --out "$FIGURES/$out"
}

plot() {
    local out=$1; shift
    "$TRAIN" plot "$@" --out "$FIGURES/$out"
}

has_data() {
    [ -e "datasets/$1" ]
}

for section in $SECTIONS; do
    echo "== $section"
    case $section in
    lossgrad_table3)
        sweep "$section" reproduce_lossgrad_table3
        summarize lossgrad_table3.md "$RUNS/lossgrad_table3"
        plot lossgrad_table3.png "$RUNS/lossgrad_table3" --panels train_loss,eval_loss,lr \
            --title "LossGrad Table 3: Fashion-MNIST autoencoder, 3 seeds (mean, min-max band)"
        ;;
    lossgrad_fig3)
        sweep "$section" reproduce_lossgrad_fig3
        summarize lossgrad_fig3.md "$RUNS/lossgrad_fig3_fmnist_autoencoder"
        for precision in f32 f64; do
            plot "lossgrad_fig3_$precision.png" "$RUNS"/lossgrad_fig3_fmnist_autoencoder/*-precision=$precision-seed0 \
                --panels lr,train_loss --first 800 \
                --title "LossGrad Fig. 3 on the Fashion-MNIST autoencoder in $precision: h over the first 800 batches from six h0"
        done
        ;;
    l4_badreg)
        sweep "$section" reproduce_l4_badreg
        summarize l4_badreg.md "$RUNS/l4_badreg"
        plot l4_badreg_recht.png $(ls -d "$RUNS"/l4_badreg/*-seed* | grep -v _svd-seed) \
            --panels train_loss,lr --title "L4 Sec. 3.1, Recht's matrix (what the paper ran), 5 seeds"
        plot l4_badreg_svd.png "$RUNS"/l4_badreg/*_svd-seed* \
            --panels train_loss,lr --title "L4 Sec. 3.1, SVD matrix with a true condition number of 1e10, 5 seeds"
        ;;
    gr_boston)
        sweep "$section" reproduce_gr_boston
        summarize gr_boston.md "$RUNS/gr_boston"
        plot gr_boston.png "$RUNS/gr_boston" --panels train_loss,eval_loss,lr \
            --title "Gorti-Ravaut, Boston Housing (full batch)"
        ;;
    gr_logistic)
        sweep "$section" reproduce_gr_logistic_fmnist
        summarize gr_logistic.md "$RUNS/gr_logistic_fmnist"
        plot gr_logistic.png "$RUNS/gr_logistic_fmnist" --panels lr,train_loss,accuracy \
            --title "Gorti-Ravaut logistic regression on Fashion-MNIST: the step size settling"
        ;;
    tlr_robustness)
        sweep "$section" reproduce_tlr_robustness_fmnist
        summarize tlr_robustness.md "$RUNS/tlr_robustness_fmnist" --reach test_accuracy=0.85
        plot tlr_robustness.png "$RUNS/tlr_robustness_fmnist" --x epoch \
            --panels train_loss,eval_loss,accuracy,lr \
            --title "TLR on Fashion-MNIST: alpha0 in {1e-3, 1e-2, 1e-1} x batch 64-512"
        ;;
    cifar_short)
        if has_data cifar10; then
            sweep "$section" reproduce_cifar_short
            summarize cifar_short.md "$RUNS/lossgrad_table1_cifar10_short"
            plot cifar_short.png "$RUNS/lossgrad_table1_cifar10_short" --x epoch \
                --title "LossGrad Table 1, shortened to 2 epochs"
        else
            echo "skipped: datasets/cifar10 is missing"
            record_time "$section" skipped
        fi
        ;;
    imdb_short)
        if has_data imdb && has_data glove; then
            sweep "$section" reproduce_imdb_short
            summarize imdb_short.md "$RUNS/lossgrad_table5_imdb_short"
        else
            echo "skipped: datasets/imdb or datasets/glove is missing"
            record_time "$section" skipped
        fi
        ;;
    *)
        echo "unknown section $section (one of: $ALL_SECTIONS)" >&2
        exit 2
        ;;
    esac
done

# The report: a header with the machine and the times, then each section's prose with its
# generated tables and times put in.
total=$(awk '$2 ~ /^[0-9]+$/ { s += $2 } END { print s + 0 }' "$TIMES")
{
    echo "# Reproduction report: the papers' CPU-sized results"
    echo
    echo "Generated by \`scripts/reproduce_cpu.sh\` on $(date -u +%Y-%m-%d) at commit" \
        "\`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`, on" \
        "$(nproc) cores of $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" \
        "with \`--jobs $JOBS\`. Training time of the sections run: $((total / 60)) min $((total % 60)) s" \
        "(the sum of each sweep's wall time; build excluded)."
    echo
    for note in scripts/report/*.md; do
        while IFS= read -r line; do
            case $line in
            "@table "*)
                file=$FIGURES/${line#@table }
                if [ -s "$file" ]; then cat "$file"; else echo "_(not generated: section not run)_"; fi
                ;;
            "@time "*)
                t=$(awk -v s="${line#@time }" '$1 == s { print $2 }' "$TIMES")
                case $t in
                "") echo "_Not run._" ;;
                skipped) echo "_Skipped: its data is not in \`datasets/\` on this machine._" ;;
                *) echo "_Wall time: $((t / 60)) min $((t % 60)) s._" ;;
                esac
                ;;
            *) printf '%s\n' "$line" ;;
            esac
        done < "$note"
        echo
    done
} > results/REPORT.md
echo "wrote results/REPORT.md ($((total / 60)) min $((total % 60)) s of training)"
