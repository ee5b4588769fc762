# gen.awk: deterministic file contents for the AIS demo packages.
#
# Called from %install through the macros in ais.macros (never by hand):
#   awk -v mode=text  -v root=BUILDROOT -v path=/abs/file -v size=BYTES -v seed=N -f gen.awk
#   awk -v mode=blob  -v root=BUILDROOT -v path=/abs/file -v size=BYTES -v seed=N -f gen.awk
#   awk -v mode=tree  -v root=BUILDROOT -v path=/abs/dir  -v size=BYTES -v seed=N \
#       -v count=N -v ext=.suffix -f gen.awk
# plus -v scale=N (default 1): text and blob files get size*N bytes, a tree gets
# count*N files of the same sizes (the first `count` files are those of scale 1).
# text: compressible config/doc-like lines; blob: pseudo-random printable bytes
# (compress to about 80%); tree: COUNT small text files of about BYTES each,
# 40 per sub-directory. The same arguments always give the same bytes
# (awk's srand(seed) is deterministic; sizes are exact).
BEGIN {
    if (mode == "" || root == "" || path == "" || size == "" || seed == "") {
        print "gen.awk: need mode, root, path, size, seed" > "/dev/stderr"; exit 2
    }
    if (scale == "") scale = 1
    if (scale !~ /^[1-9][0-9]*$/) { print "gen.awk: scale must be a positive integer" > "/dev/stderr"; exit 2 }
    nw = split("cluster node image install package config server client block " \
               "chunk stream module option value default enable disable path " \
               "user group data cache local share lib bin etc var run log " \
               "version release build test check load save open close read write", W, " ")
    for (i = 33; i < 127; i++) C[i - 33] = sprintf("%c", i)
    srand(seed + 0)
    if (mode == "text") text(root path, size * scale)
    else if (mode == "blob") blob(root path, size * scale)
    else if (mode == "tree") tree(root path, size + 0, count * scale, ext)
    else { print "gen.awk: unknown mode " mode > "/dev/stderr"; exit 2 }
}
function mkparent(file,   d) {
    d = file; sub(/\/[^\/]*$/, "", d)
    if (!(d in MADE)) { system("mkdir -p '" d "'"); MADE[d] = 1 }
}
function text(file, n,   out, line, k) {
    mkparent(file); out = 0
    while (out < n) {
        line = "# " W[int(rand() * nw) + 1]
        for (k = int(rand() * 8) + 2; k > 0; k--) line = line " " W[int(rand() * nw) + 1]
        line = line " = " int(rand() * 1000) "\n"
        if (out + length(line) > n) line = substr(line, 1, n - out)
        printf "%s", line > file; out += length(line)
    }
    close(file)
}
function blob(file, n,   out, line, k, m) {
    mkparent(file); out = 0
    while (out < n) {
        m = (n - out < 128) ? n - out : 128
        line = ""
        for (k = 1; k < m; k++) line = line C[int(rand() * 94)]
        line = line "\n"
        printf "%s", line > file; out += m
    }
    close(file)
}
function tree(dir, n, cnt, sfx,   i, f) {
    for (i = 0; i < cnt; i++) {
        f = sprintf("%s/d%02d/f%04d%s", dir, int(i / 40), i, sfx)
        text(f, int(n / 2 + rand() * n))
    }
}
