;;; alpine-lsp.el --- Eglot set-up for the alpine-lsp language server  -*- lexical-binding: t; -*-

;; Author: alpine-lsp contributors
;; Version: 0.1.0
;; Package-Requires: ((emacs "27.1") (eglot "1.9"))
;; Keywords: languages, tools
;; SPDX-License-Identifier: Apache-2.0

;; This file is not part of GNU Emacs.

;;; Commentary:

;; alpine-lsp is a language server that flags functions an ALPINE-pruned
;; Transformer scores as likely defective ("possible defect (p=0.87)",
;; diagnostic source `alpine', codes `defect-risk' and `similar-code') and
;; reports similar functions.  This file connects it to Eglot.
;;
;;   (add-to-list 'load-path "/path/to/alpine-lsp/editors/emacs")
;;   (require 'alpine-lsp)
;;   (add-hook 'python-mode-hook #'eglot-ensure)   ; and so on
;;
;; Loading it adds alpine-lsp to `eglot-server-programs' for the major
;; modes in `alpine-lsp-major-modes'.  With an Eglot that tracks language
;; ids per buffer (Emacs 30's), one server serves all of them in a
;; project; older Eglot versions (1.9 to 1.12, Emacs 29's) keep one
;; language id per server, so there alpine-lsp gets one server (and one
;; copy of the model) per language per project.  Eglot runs ONE server per buffer, so in
;; those modes alpine-lsp replaces the server Eglot would otherwise start
;; (pylsp, clangd, gopls, ...).  Trim `alpine-lsp-major-modes' to the modes
;; where you want alpine-lsp.
;;
;; Settings: `alpine-lsp-initialization-options' is sent as
;; initializationOptions and also answers the server's
;; workspace/configuration request for section "alpine".  A project can
;; override single keys with an `:alpine' section in
;; `eglot-workspace-configuration' (e.g. in .dir-locals.el).
;;
;; Commands:
;;   `alpine-lsp-show-similar'  list functions similar to the one at point
;;                              (the server command alpine.showSimilar)
;;   `alpine-lsp-show-stats'    show the answer to the alpine/stats request
;;   `alpine-lsp-update-settings' re-send the settings to the server

;;; Code:

(require 'cl-lib)
(require 'eglot)
(require 'jsonrpc)
(require 'json)
(require 'xref)

(declare-function eglot-path-to-uri "eglot" (path))
(declare-function eglot--path-to-uri "eglot" (path))
(declare-function eglot-uri-to-path "eglot" (uri))
(declare-function eglot--uri-to-path "eglot" (uri))
(declare-function xref--show-xrefs "xref" (fetcher display-action &optional always-show-list))
(declare-function js-json-mode "js" ())

(defgroup alpine-lsp nil
  "Defect-risk and similar-code hints from the alpine-lsp language server."
  :group 'eglot
  :prefix "alpine-lsp-")

(defcustom alpine-lsp-server-command '("alpine-lsp" "--stdio")
  "Command line that starts the server, as a list of strings.
For a particular Python environment use, for example,
\(\"/path/to/venv/bin/python\" \"-m\" \"alpine_lsp\" \"--stdio\").
Read each time Eglot starts the server."
  :type '(repeat string))

(defcustom alpine-lsp-initialization-options
  '(:severity "warning"
    :debounceMs 300
    :device "auto"
    :maxFileSize 2000000
    :similarity (:enabled t :maxResults 3))
  "The server's `alpine' settings, as a plist.
Sent as initializationOptions and used to answer the server's
workspace/configuration request for section \"alpine\".  Keys left
out use the server's defaults.  Keys:

  :threshold   number 0..1, or :null for the model's calibrated one
  :severity    \"error\", \"warning\", \"information\" or \"hint\"
  :debounceMs  milliseconds (300)
  :device      \"auto\", \"cpu\" or \"cuda\"
  :threads     integer, or :null for automatic
  :model       local model directory, or :null for the bundled model
  :pruning     (:alpha 0.3 :layers \"all\" :mode \"merge\"); layers is
               \"all\", \"none\", \"even\", \"odd\" or e.g. \"0,2,4\";
               mode is \"merge\" or \"drop\"
  :languages   vector of language ids, e.g. [\"python\" \"go\"]
  :maxTokens   integer (512)
  :maxFileSize bytes (2000000)
  :similarity  (:enabled t :threshold :null :maxResults 3)

Use vectors for JSON arrays, :json-false for false and :null for null.
After changing it, run `alpine-lsp-update-settings' or `eglot-reconnect'."
  :type '(plist :key-type (symbol :tag "Key") :value-type (sexp :tag "Value")))

(defconst alpine-lsp--default-major-modes
  '((c-mode . "c") (c-ts-mode . "c")
    (c++-mode . "cpp") (c++-ts-mode . "cpp")
    (java-mode . "java") (java-ts-mode . "java")
    (python-mode . "python") (python-ts-mode . "python")
    ;; JSX modes first: js-jsx-mode is derived from js-mode.
    (js-jsx-mode . "javascriptreact") (rjsx-mode . "javascriptreact")
    (js-mode . "javascript") (js-ts-mode . "javascript") (js2-mode . "javascript")
    (tsx-ts-mode . "typescriptreact")
    (typescript-mode . "typescript") (typescript-ts-mode . "typescript")
    (go-mode . "go") (go-ts-mode . "go")
    (rust-mode . "rust") (rust-ts-mode . "rust") (rustic-mode . "rust"))
  "Major modes of the languages the server supports, with their LSP language ids.")

(defvar alpine-lsp--registered nil
  "Non-nil once `alpine-lsp-register' has run.")

(defcustom alpine-lsp-major-modes alpine-lsp--default-major-modes
  "Major modes for which Eglot starts alpine-lsp, with the LSP language id.
An alist of (MAJOR-MODE . LANGUAGE-ID).  Eglot runs one server per
buffer: in these modes alpine-lsp replaces the server Eglot would
otherwise use.  Setting this with `customize' or `setopt' updates
`eglot-server-programs'."
  :type '(alist :key-type (symbol :tag "Major mode")
                :value-type (string :tag "Language id"))
  :set (lambda (symbol value)
         (set-default symbol value)
         (when alpine-lsp--registered
           (alpine-lsp-register))))

(defclass alpine-lsp-server (eglot-lsp-server) ()
  :documentation "An Eglot connection to alpine-lsp.")

(defun alpine-lsp--object (plist)
  "Return PLIST, or an empty JSON object when it is nil."
  (or plist (make-hash-table)))

(cl-defmethod eglot-initialization-options ((_server alpine-lsp-server))
  "Send `alpine-lsp-initialization-options' as initializationOptions."
  (alpine-lsp--object alpine-lsp-initialization-options))

(defun alpine-lsp--plist-p (value)
  "Non-nil if VALUE is a plist with keyword keys."
  (and (consp value) (keywordp (car value))))

(defun alpine-lsp--merge (base override)
  "Merge plist OVERRIDE into a copy of plist BASE, recursing into nested plists."
  (let ((result (copy-sequence base)))
    (cl-loop for (key value) on override by #'cddr
             do (let ((old (plist-get result key)))
                  (setq result
                        (plist-put result key
                                   (if (and (alpine-lsp--plist-p old)
                                            (alpine-lsp--plist-p value))
                                       (alpine-lsp--merge old value)
                                     value)))))
    result))

(cl-defmethod eglot-handle-request
  ((_server alpine-lsp-server) (_method (eql workspace/configuration)) &key items)
  "Answer ITEMS asking for section \"alpine\" from the settings.
The answer is `alpine-lsp-initialization-options' with any `:alpine'
section of `eglot-workspace-configuration' merged on top.  Other
sections get Eglot's usual answer."
  (let ((answers (cl-call-next-method)))
    (cl-map 'vector
            (lambda (item answer)
              (if (equal (plist-get item :section) "alpine")
                  (alpine-lsp--object
                   (alpine-lsp--merge alpine-lsp-initialization-options
                                      (and (alpine-lsp--plist-p answer) answer)))
                answer))
            items answers)))

(defun alpine-lsp--contact (&optional _interactive)
  "Return the Eglot contact for alpine-lsp from `alpine-lsp-server-command'."
  (cons 'alpine-lsp-server alpine-lsp-server-command))

(defun alpine-lsp--per-buffer-language-ids-p ()
  "Non-nil if this Eglot sends each buffer's own languageId.
Eglot 1.9 to 1.12 (Emacs 29) keep a single language id per server."
  (fboundp 'eglot--languages))

(defun alpine-lsp--mode-groups ()
  "Return the major-mode parts of the `eglot-server-programs' entries.
One entry for all modes (one server per project) when Eglot tracks
language ids per buffer, else one entry per language id, so that every
document reaches the server with its own languageId."
  (let ((specs (mapcar (lambda (entry) (list (car entry) :language-id (cdr entry)))
                       alpine-lsp-major-modes)))
    (if (alpine-lsp--per-buffer-language-ids-p)
        (list specs)
      (let (groups)
        (dolist (spec specs)
          (let* ((id (plist-get (cdr spec) :language-id))
                 (group (assoc id groups)))
            (if group
                (setcdr group (append (cdr group) (list spec)))
              (push (list id spec) groups))))
        (mapcar #'cdr (nreverse groups))))))

(defun alpine-lsp-unregister ()
  "Remove alpine-lsp from `eglot-server-programs'."
  (interactive)
  (setq eglot-server-programs
        (cl-remove #'alpine-lsp--contact eglot-server-programs :key #'cdr :test #'eq))
  (setq alpine-lsp--registered nil))

(defun alpine-lsp-register ()
  "Put alpine-lsp first in `eglot-server-programs' for `alpine-lsp-major-modes'."
  (interactive)
  (alpine-lsp-unregister)
  (dolist (modes (reverse (alpine-lsp--mode-groups)))
    (push (cons modes #'alpine-lsp--contact) eglot-server-programs))
  (setq alpine-lsp--registered t))

(defun alpine-lsp--server ()
  "Return the alpine-lsp Eglot server of the current buffer, or signal an error."
  (let ((server (eglot-current-server)))
    (unless (cl-typep server 'alpine-lsp-server)
      (user-error "No alpine-lsp server manages this buffer (try M-x eglot)"))
    server))

(defun alpine-lsp--path-to-uri (path)
  "Return the URI for PATH, as Eglot computes it."
  (if (fboundp 'eglot-path-to-uri) (eglot-path-to-uri path) (eglot--path-to-uri path)))

(defun alpine-lsp--uri-to-path (uri)
  "Return the file name for URI, as Eglot computes it."
  (if (fboundp 'eglot-uri-to-path) (eglot-uri-to-path uri) (eglot--uri-to-path uri)))

(defun alpine-lsp--line-text (file line)
  "Return the trimmed text of 0-based LINE in FILE, or an empty string."
  (let ((buffer (find-buffer-visiting file)))
    (with-temp-buffer
      (cond (buffer (insert-buffer-substring-no-properties buffer))
            ((file-readable-p file) (insert-file-contents file)))
      (goto-char (point-min))
      (if (zerop (forward-line line))
          (string-trim (buffer-substring-no-properties (line-beginning-position)
                                                       (line-end-position)))
        ""))))

(defun alpine-lsp--location-xref (location)
  "Return an xref item for the LSP LOCATION plist."
  (let* ((file (alpine-lsp--uri-to-path (plist-get location :uri)))
         (start (plist-get (plist-get location :range) :start))
         (line (plist-get start :line))
         (column (plist-get start :character)))
    (xref-make (alpine-lsp--line-text file line)
               (xref-make-file-location file (1+ line) column))))

;;;###autoload
(defun alpine-lsp-show-similar ()
  "List the functions similar to the function at point.
Runs the server command alpine.showSimilar (arguments: uri, line) and
shows the returned locations with xref.  Eglot has no code lens
support, so this stands in for the \"N similar functions\" lens."
  (interactive)
  (let* ((server (alpine-lsp--server))
         (file (or buffer-file-name (user-error "This buffer visits no file")))
         (line (1- (line-number-at-pos)))
         (result (jsonrpc-request server :workspace/executeCommand
                                  (list :command "alpine.showSimilar"
                                        :arguments (vector (alpine-lsp--path-to-uri file) line))))
         (xrefs (mapcar #'alpine-lsp--location-xref (append result nil))))
    (if (null xrefs)
        (message "alpine-lsp: no similar functions found")
      (let ((fetcher (lambda () xrefs)))
        (if (fboundp 'xref-show-xrefs)
            (xref-show-xrefs fetcher nil)
          (xref--show-xrefs fetcher nil))))))

;;;###autoload
(defun alpine-lsp-show-stats ()
  "Send the alpine/stats request and show the JSON answer."
  (interactive)
  (let* ((server (alpine-lsp--server))
         (stats (jsonrpc-request server :alpine/stats (make-hash-table)))
         (buffer (get-buffer-create "*alpine-lsp stats*")))
    (with-current-buffer buffer
      (let ((inhibit-read-only t))
        (erase-buffer)
        (insert (let ((json-encoding-pretty-print t)) (json-encode stats)))
        (if (fboundp 'js-json-mode) (js-json-mode) (js-mode))
        (goto-char (point-min))
        (view-mode 1)))
    (display-buffer buffer)
    buffer))

;;;###autoload
(defun alpine-lsp-update-settings ()
  "Tell the server of the current buffer that its settings changed.
The server then asks for section \"alpine\" again, which is answered
from `alpine-lsp-initialization-options' and the project's
`eglot-workspace-configuration'."
  (interactive)
  (eglot-signal-didChangeConfiguration (alpine-lsp--server)))

(alpine-lsp-register)

(provide 'alpine-lsp)
;;; alpine-lsp.el ends here
