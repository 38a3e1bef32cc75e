extension FlagSet {
    /// The flags grouped by section, sections in the order they first appear among the specs.
    public var sections: [(name: String, specs: [FlagSpec])] {
        var order: [String] = []
        var bySection: [String: [FlagSpec]] = [:]
        for spec in self.specs {
            if bySection[spec.section] == nil { order.append(spec.section) }
            bySection[spec.section, default: []].append(spec)
        }
        return order.map { ($0, bySection[$0]!) }
    }

    /// The text for `--help`: every flag by section, with its default, wrapped to `width` columns.
    ///
    /// - Parameter usage: the first line; defaults to `Usage: PROGRAM [--flag=value ...]`.
    public func help(programName: String, usage: String? = nil, width: Int = 100) -> String {
        var out = (usage ?? "Usage: \(programName) [--flag=value ...] [--flagfile=PATH ...]") + "\n"
        for section in self.sections {
            out += "\n\(section.name):\n"
            for spec in section.specs {
                out += "  \(spec.synopsis)\n"
                var text = spec.help
                let notes = spec.notes(quoteDefault: { $0.isEmpty || $0.contains(where: \.isWhitespace) ? quoted($0) : $0 })
                if !notes.isEmpty { text += (text.isEmpty ? "" : " ") + "(\(notes))" }
                for line in wrap(text, width: max(20, width - 6)) {
                    out += line.isEmpty ? "\n" : "      \(line)\n"
                }
            }
        }
        return out
    }

    /// The flag reference in Markdown: a heading and a table per section. Generate the docs'
    /// flag page from this so that it always matches the program.
    ///
    /// Help texts are inserted as Markdown (so they may use `code` spans); `|` is escaped and
    /// line breaks become `<br>` to keep each flag on one table row.
    public func markdownReference(headingLevel: Int = 2) -> String {
        let hashes = String(repeating: "#", count: max(1, min(6, headingLevel)))
        var out = ""
        for section in self.sections {
            if !out.isEmpty { out += "\n" }
            out += "\(hashes) \(section.name)\n\n"
            out += "| Flag | Default | Description |\n"
            out += "| --- | --- | --- |\n"
            for spec in section.specs {
                let defaultCell = spec.defaultValue.map { codeSpan($0) } ?? ""
                var description = spec.help
                if spec.isRepeatable { description += (description.isEmpty ? "" : " ") + "Repeatable." }
                out += "| \(tableCell(codeSpan(spec.synopsis))) | \(tableCell(defaultCell)) | \(tableCell(description)) |\n"
            }
        }
        return out
    }
}

extension FlagSpec {
    /// `--check` for booleans, `--heartbeat=DURATION` for the rest.
    var synopsis: String {
        self.isBoolean ? "--\(self.name)" : "--\(self.name)=\(self.valueName)"
    }

    /// `repeatable; default: 15s`, or whichever parts apply.
    func notes(quoteDefault: (String) -> String) -> String {
        var notes: [String] = []
        if self.isRepeatable { notes.append("repeatable") }
        if let defaultValue = self.defaultValue { notes.append("default: \(quoteDefault(defaultValue))") }
        return notes.joined(separator: "; ")
    }
}

/// Greedy word wrap; explicit line breaks in `text` are kept. Words longer than `width` stay whole.
func wrap(_ text: String, width: Int) -> [String] {
    var lines: [String] = []
    for paragraph in text.split(separator: "\n", omittingEmptySubsequences: false) {
        var line = ""
        for word in paragraph.split(separator: " ") {
            if line.isEmpty {
                line = String(word)
            } else if line.count + 1 + word.count <= width {
                line += " " + word
            } else {
                lines.append(line)
                line = String(word)
            }
        }
        lines.append(line)
    }
    return lines
}

/// `text` as a Markdown code span, using a longer fence when the text itself holds a backtick.
private func codeSpan(_ text: String) -> String {
    if text.isEmpty { return "`\"\"`" }
    if text.contains("`") { return "`` \(text) ``" }
    return "`\(text)`"
}

/// Escapes what would break a table row.
private func tableCell(_ text: String) -> String {
    var out = ""
    for character in text {
        switch character {
        case "|": out += "\\|"
        case "\n": out += "<br>"
        default: out.append(character)
        }
    }
    return out
}
