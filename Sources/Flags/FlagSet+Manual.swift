extension FlagSet {
    /// The flags as the body of a man page's OPTIONS section (roff, `man(7)` macros): a `.SS`
    /// per section and a `.TP` paragraph per flag with its default. The packages' `lifeline.1` is
    /// made from this, as docs/flags.md is made from `markdownReference`, so neither can drift
    /// from the program.
    ///
    /// Help texts are written as plain text: Markdown backticks are dropped, and whatever roff
    /// would read as markup (backslashes, a leading `.` or `'`, hyphens) is escaped.
    public func roffReference() -> String {
        var out = ""
        for section in self.sections {
            out += ".SS \(roffText(section.name))\n"
            for spec in section.specs {
                out += ".TP\n"
                if spec.isBoolean {
                    out += "\\fB\(roffText("--" + spec.name))\\fR\n"
                } else {
                    out += "\\fB\(roffText("--" + spec.name))\\fR=\\fI\(roffText(spec.valueName))\\fR\n"
                }
                var text = spec.help
                let notes = spec.notes(quoteDefault: { $0.isEmpty || $0.contains(where: \.isWhitespace) ? quoted($0) : $0 })
                if !notes.isEmpty { text += (text.isEmpty ? "" : " ") + "(\(notes))" }
                out += roffParagraphs(text)
            }
        }
        return out
    }
}

/// Text as roff lines: one input line per paragraph of `text`, `.br` between paragraphs.
func roffParagraphs(_ text: String) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false)
        .map { roffLine(String($0)) }
        .joined(separator: ".br\n")
}

/// One line of running text: escaped, and protected from being read as a request.
public func roffLine(_ text: String) -> String {
    let escaped = roffText(text)
    // A line that starts with . or ' is a roff request; \& in front makes it text.
    if escaped.hasPrefix(".") || escaped.hasPrefix("'") { return "\\&" + escaped + "\n" }
    return escaped + "\n"
}

/// Escapes text for roff: `\` as `\e`, `-` as `\-` (an option's hyphens must stay copyable
/// ASCII hyphens), Markdown backticks dropped, anything beyond ASCII as a `\[uXXXX]` glyph so
/// that the page needs no input-encoding guess.
public func roffText(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\\": out += "\\e"
        case "-": out += "\\-"
        case "`": continue
        case _ where scalar.value > 0x7E || (scalar.value < 0x20 && scalar != "\t"):
            out += "\\[u" + String(String(scalar.value, radix: 16, uppercase: true).paddingLeft(to: 4)) + "]"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

extension String {
    fileprivate func paddingLeft(to width: Int) -> String {
        self.count >= width ? self : String(repeating: "0", count: width - self.count) + self
    }
}
