/// The declared name closest to a mistyped one, or nil when nothing is close enough to help.
///
/// Close means a small edit distance for the name's length, or the typed name being the start of
/// exactly one declared name (`--heart` for `--heartbeat`).
func nearestName(to typed: String, among names: [String]) -> String? {
    let limit = max(2, typed.count / 3)
    var best: (name: String, distance: Int)?
    let typedCount = typed.count
    for name in names {
        // The distance is at least the difference in length: skip names that cannot be close,
        // so that a long garbage "name" (a flag file that is not one) costs no n×m table each.
        guard abs(typedCount - name.count) <= limit else { continue }
        let distance = editDistance(typed, name)
        if distance <= limit, distance < (best?.distance ?? .max) {
            best = (name, distance)
        }
    }
    if let best { return best.name }
    let extensions = names.filter { $0.hasPrefix(typed) }
    if typed.count >= 3, extensions.count == 1 { return extensions[0] }
    return nil
}

/// Levenshtein distance, counting an adjacent swap ("hearbteat") as one edit.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous2 = [Int](repeating: 0, count: b.count + 1)
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                current[j] = min(current[j], previous2[j - 2] + 1)
            }
        }
        (previous2, previous, current) = (previous, current, previous2)
    }
    return previous[b.count]
}
